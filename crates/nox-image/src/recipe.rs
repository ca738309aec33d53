//! What goes into a built image: the packages, the files written into the tree, the kernel
//! command line and the container shaping. Everything here is data, hashed into the recipe's
//! name, so a change to any of it makes a new build and an unchanged recipe is never rebuilt.

use nox_core::image_build::{Distribution, Release};
use sha2::{Digest, Sha256};

/// Bump when a build step changes what the outputs contain (partitioning, filesystem options,
/// packing); the data below is hashed on its own.
const STEPS_VERSION: u32 = 3;

/// What the tree holds beyond debootstrap's minbase. python3-cffi-backend: without it
/// debootstrap leaves python3-cryptography, and so cloud-init, unconfigured.
/// cloud-guest-utils: growpart, so cloud-init grows the root partition to the VM's disk.
/// ifupdown and isc-dhcp-client: cloud-init's ENI renderer, the one that needs no netplan.
const COMMON_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "cloud-init",
    "cloud-guest-utils",
    "openssh-server",
    "qemu-guest-agent",
    "ifupdown",
    "isc-dhcp-client",
    "python3-cffi-backend",
    "iproute2",
    "sudo",
    "locales",
    "ca-certificates",
    "netbase",
    "dbus",
];

/// The kernel command line. `net.ifnames=0`: cloud-init's ENI renderer writes a stanza for
/// `eth0`, so the NIC must be called that, not `enp1s0`.
pub const KERNEL_CMDLINE: &str = "root=LABEL=root ro console=ttyS0 net.ifnames=0";

/// A file written into the tree: path below the root, mode, contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub path: &'static str,
    pub mode: u32,
    pub contents: &'static str,
}

/// Files every image gets, before the VM or container shaping.
pub const TREE_FILES: &[TreeFile] = &[
    TreeFile {
        path: "etc/hostname",
        mode: 0o644,
        contents: "localhost\n",
    },
    TreeFile {
        path: "etc/hosts",
        mode: 0o644,
        contents: "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    },
    TreeFile {
        path: "etc/fstab",
        mode: 0o644,
        contents: "LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n",
    },
    // Keep Debian's `source` line: cloud-init writes the NIC's stanza into interfaces.d, and
    // without the line the NIC stays down.
    TreeFile {
        path: "etc/network/interfaces",
        mode: 0o644,
        contents: "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    },
    TreeFile {
        path: "etc/cloud/cloud.cfg.d/90-nox.cfg",
        mode: 0o644,
        contents: "# Built by nox: seeds come from NoCloud (a CIDATA disk, or a seed directory).\n\
                   datasource_list: [NoCloud, None]\n\
                   # The locale module needs generated locales; C.UTF-8 is built in.\n\
                   locale: false\n",
    },
];

/// A container mounts no filesystems of its own: the VM's `LABEL=root` line would fail
/// systemd-remount-fs, and unprivileged containers cannot mount debugfs or tracefs, so those
/// units are masked, as LXC's own images do.
pub const CONTAINER_FSTAB: &str = "# LXC mounts the container's filesystems.\n";
pub const CONTAINER_MASKED_UNITS: &[&str] = &["sys-kernel-debug.mount", "sys-kernel-tracing.mount"];

/// Containers are shaped like LXC's own images: no cloud-init (nox provisions the user
/// itself), systemd-networkd instead of ifupdown (boot does not wait for a DHCP lease), SSH
/// host keys made on first boot.
pub const CONTAINER_NETWORK: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n";
pub const SSH_HOSTKEYS_UNIT: &str = "[Unit]\nDescription=Create SSH host keys on first boot\n\
Before=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n\
[Install]\nWantedBy=multi-user.target\n";

/// One release's recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub release: Release,
    pub packages: Vec<&'static str>,
    /// Archive components debootstrap enables.
    pub components: &'static str,
    /// The keyring apt checks the archive's Release file with, and the package that has it.
    pub keyring: (&'static str, &'static str),
    /// debootstrap's script for the suite, when debootstrap predates the release.
    pub script: Option<&'static str>,
}

impl Recipe {
    pub fn for_release(release: Release) -> Recipe {
        let mut packages = COMMON_PACKAGES.to_vec();
        match release.distribution {
            Distribution::Debian => {
                packages.insert(1, "linux-image-amd64");
                Recipe {
                    release,
                    packages,
                    components: "main",
                    keyring: (
                        "/usr/share/keyrings/debian-archive-keyring.gpg",
                        "debian-archive-keyring",
                    ),
                    script: None,
                }
            }
            Distribution::Ubuntu => {
                packages.insert(1, "linux-image-virtual");
                Recipe {
                    release,
                    packages,
                    // ifupdown is in universe on Ubuntu.
                    components: "main,universe",
                    keyring: (
                        "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
                        "ubuntu-keyring",
                    ),
                    // Debian 12's debootstrap has no `noble` script; every Ubuntu release
                    // since 7.10 bootstraps with the same one.
                    script: Some("/usr/share/debootstrap/scripts/gutsy"),
                }
            }
        }
    }

    /// The first 16 hex digits of SHA-256 over everything that decides the outputs.
    pub fn hash(&self) -> String {
        let text = format!(
            "{STEPS_VERSION}\n{}/{}\n{:?}\n{}\n{KERNEL_CMDLINE}\n{TREE_FILES:?}\n{CONTAINER_FSTAB}\n\
             {CONTAINER_MASKED_UNITS:?}\n{CONTAINER_NETWORK}\n{SSH_HOSTKEYS_UNIT}",
            self.release.distribution, self.release.suite, self.packages, self.components,
        );
        hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_release_has_its_own_recipe_and_kernel() {
        let debian = Recipe::for_release(Release::parse("debian/12").unwrap());
        let trixie = Recipe::for_release(Release::parse("debian/13").unwrap());
        let ubuntu = Recipe::for_release(Release::parse("ubuntu/24.04").unwrap());
        assert!(debian.packages.contains(&"linux-image-amd64"));
        assert!(ubuntu.packages.contains(&"linux-image-virtual"));
        assert!(!ubuntu.packages.contains(&"linux-image-amd64"));
        let hashes = [debian.hash(), trixie.hash(), ubuntu.hash()];
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[0], hashes[2]);
        assert_eq!(debian.hash(), debian.clone().hash(), "stable");
    }
}
