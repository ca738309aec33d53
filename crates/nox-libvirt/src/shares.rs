//! Shared folders for VMs: virtiofs. libvirt starts one virtiofsd per share, serving the host
//! directory to the guest, which mounts it by tag (an fstab line cloud-init writes at first
//! boot, see [`nox_core::cloud_init`]).
//!
//! virtiofsd runs as root on the host and confines itself to the shared directory (a mount
//! namespace with the directory as its root, pivot_root, seccomp): the guest's `..` at the
//! share's root and its symlinks resolve inside that root, never in the host's `/`.

use std::path::{Path, PathBuf};

use nox_core::mounts::{virtiofs_tag, Mount};
use nox_core::Error;

use crate::domain::Share;

/// Where a virtiofsd may be: a distribution's package (Debian 13, Fedora), then what
/// `cargo xtask setup` builds on Debian 12, which packages none.
const VIRTIOFSD: &[&str] = &[
    "/usr/libexec/virtiofsd",
    "/usr/lib/qemu/virtiofsd",
    "/usr/local/bin/virtiofsd",
];

/// The host's virtiofsd.
pub fn virtiofsd() -> Result<PathBuf, Error> {
    VIRTIOFSD
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::failed(
                "VM shared folders need virtiofsd, which this host does not have",
                "install your distribution's virtiofsd package, or on Debian 12 run `cargo xtask setup` (it builds virtiofsd into /usr/local/bin)",
            )
        })
}

/// The domain's `<filesystem>` elements for `mounts`; none needs no virtiofsd.
pub fn domain_shares(mounts: &[Mount]) -> Result<Vec<Share>, Error> {
    if mounts.is_empty() {
        return Ok(Vec::new());
    }
    let bin = virtiofsd()?;
    Ok(mounts.iter().map(|m| share(m, &bin)).collect())
}

pub(crate) fn share(m: &Mount, virtiofsd: &Path) -> Share {
    Share {
        source: m.host.display().to_string(),
        tag: virtiofs_tag(&m.guest),
        readonly: m.readonly,
        virtiofsd: virtiofsd.display().to_string(),
    }
}

/// How long a guest command for a share (mkdir, mount, the fstab edit) may take.
const GUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Appends LINE ($1) to /etc/fstab unless it is there. The script is constant: the line
/// arrives as a positional parameter, never as shell text.
const FSTAB_ADD: &str = r#"grep -qxF "$1" /etc/fstab || printf '%s\n' "$1" >> /etc/fstab"#;
/// Removes LINE ($1) from /etc/fstab, rewriting the file in place (same inode and mode).
const FSTAB_RM: &str =
    r#"t=$(grep -vxF "$1" /etc/fstab; printf x) && printf '%s' "${t%x}" > /etc/fstab"#;

/// Runs argv in the guest through its agent; a non-zero exit is an error naming the step.
fn guest(dom: &virt::domain::Domain, name: &str, argv: &[&str], step: &str) -> Result<(), Error> {
    let out = crate::agent::GuestAgent::new(dom).run(argv, None, GUEST_TIMEOUT)?;
    if out.code != 0 {
        return Err(Error::failed(
            format!(
                "{step} in {name} failed (exit {}): {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!("`nox exec {name} -- ...` lets you look; the domain itself was changed back"),
        ));
    }
    Ok(())
}

fn flags(running: bool) -> u32 {
    let mut f = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if running {
        f |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    f
}

/// `nox mount add` for a VM: the virtiofs device is hot-plugged into the running domain (and
/// its definition), then mounted in the guest through its agent and written to its fstab.
/// A stopped VM is refused: its guest cannot be told to mount anything.
pub fn add(
    b: &crate::LibvirtBackend,
    name: &nox_core::InstanceName,
    m: &Mount,
) -> Result<String, Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = crate::list::find(&conn, name)?;
    if let Some(old) = rec.spec.mounts.iter().find(|o| o.guest == m.guest) {
        return Err(Error::Usage(format!(
            "{name} already has a shared folder on {}: {old}; remove it first (`nox mount rm {name} {}`)",
            m.guest.display(),
            m.guest.display()
        )));
    }
    if !dom.is_active().unwrap_or(false) {
        return Err(Error::Usage(format!(
            "VM {name} is stopped: the guest mounts a new share through its agent, so start it first (`nox start {name}`), or share folders at create (--mount)"
        )));
    }
    if !has_shared_memory(&dom) {
        return Err(Error::failed(
            format!("VM {name} was defined before nox gave VMs the shared memory virtiofs needs"),
            format!(
                "a restore defines it anew: `nox backup {name}`, then `nox restore {name} --force`"
            ),
        ));
    }
    let xml = share(m, &virtiofsd()?).to_xml();
    crate::connection::logged("attachDevice", name.as_str(), || {
        dom.attach_device_flags(&xml, flags(true))
    })
    .map_err(|e| crate::connection::err(&format!("adding the share to {name}"), e))?;
    let detach = || {
        let _ = dom.detach_device_flags(&xml, flags(true));
    };
    let guest_dir = m.guest.display().to_string();
    let tag = virtiofs_tag(&m.guest);
    let line = nox_core::mounts::fstab_line(m);
    let mut mount = vec!["mount", "-t", "virtiofs"];
    if m.readonly {
        mount.extend(["-o", "ro"]);
    }
    mount.extend([tag.as_str(), guest_dir.as_str()]);
    let steps: [(&[&str], &str); 3] = [
        (&["mkdir", "-p", &guest_dir], "making the mount point"),
        (&mount, "mounting the share"),
        (
            &["sh", "-c", FSTAB_ADD, "sh", &line],
            "adding the share to /etc/fstab",
        ),
    ];
    for (i, (argv, step)) in steps.iter().enumerate() {
        if let Err(e) = guest(&dom, name.as_str(), argv, step) {
            if i == 2 {
                let _ = guest(&dom, name.as_str(), &["umount", &guest_dir], "unmounting");
            }
            detach();
            return Err(e);
        }
    }
    rec.spec.mounts.push(m.clone());
    if let Err(e) = crate::resize::save_record(&dom, &rec, true) {
        let _ = guest(&dom, name.as_str(), &["umount", &guest_dir], "unmounting");
        let _ = guest(
            &dom,
            name.as_str(),
            &["sh", "-c", FSTAB_RM, "sh", &line],
            "fstab",
        );
        detach();
        return Err(e);
    }
    Ok(format!(
        "shared {m} with {name}; mounted now and at every boot"
    ))
}

/// Whether the running domain's memory is shared (memfd), which virtiofsd needs to reach it.
/// Every VM nox defines has it; a VM from before shared folders does not, and libvirt's own
/// refusal to hot-plug into it names no way out.
fn has_shared_memory(dom: &virt::domain::Domain) -> bool {
    dom.xml_desc(0)
        .map(|xml| memory_is_shared(&xml))
        .unwrap_or(true)
}

/// Reads `<memoryBacking><source type=…/><access mode=…/>` out of a domain's XML; anything
/// else in it is ignored.
fn memory_is_shared(xml: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Domain {
        #[serde(rename = "memoryBacking")]
        memory_backing: Option<Backing>,
    }
    #[derive(serde::Deserialize)]
    struct Backing {
        source: Option<Source>,
        access: Option<Access>,
    }
    #[derive(serde::Deserialize)]
    struct Source {
        #[serde(rename = "@type")]
        kind: String,
    }
    #[derive(serde::Deserialize)]
    struct Access {
        #[serde(rename = "@mode")]
        mode: String,
    }
    let Ok(d) = quick_xml::de::from_str::<Domain>(xml) else {
        return false;
    };
    d.memory_backing.is_some_and(|b| {
        b.source.is_some_and(|s| s.kind == "memfd") && b.access.is_some_and(|a| a.mode == "shared")
    })
}

/// `nox mount rm` for a VM: unmounted in the guest and taken out of its fstab (when running),
/// then the device is unplugged and dropped from the definition.
pub fn remove(
    b: &crate::LibvirtBackend,
    name: &nox_core::InstanceName,
    guest_dir: &Path,
) -> Result<String, Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = crate::list::find(&conn, name)?;
    let Some(i) = rec.spec.mounts.iter().position(|o| o.guest == guest_dir) else {
        return Err(Error::Usage(format!(
            "{name} has no shared folder on {}; `nox mount list {name}` shows them",
            guest_dir.display()
        )));
    };
    let m = rec.spec.mounts.remove(i);
    let running = dom.is_active().unwrap_or(false);
    let dir = m.guest.display().to_string();
    if running {
        // Not mounted (unmounted by hand) is fine; busy is not: the user must close it.
        let out = crate::agent::GuestAgent::new(&dom).run(
            &[
                "sh",
                "-c",
                r#"! mountpoint -q "$1" || umount "$1""#,
                "sh",
                &dir,
            ],
            None,
            GUEST_TIMEOUT,
        )?;
        if out.code != 0 {
            return Err(Error::failed(
                format!(
                    "cannot unmount {dir} in {name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                format!("close what uses it in the guest (`nox exec {name} -- fuser -vm {dir}`), then try again"),
            ));
        }
        let line = nox_core::mounts::fstab_line(&m);
        guest(
            &dom,
            name.as_str(),
            &["sh", "-c", FSTAB_RM, "sh", &line],
            "removing the share from /etc/fstab",
        )?;
    }
    // The binary path is not part of how libvirt matches a device to detach.
    let xml = share(&m, &virtiofsd().unwrap_or_default()).to_xml();
    crate::connection::logged("detachDevice", name.as_str(), || {
        dom.detach_device_flags(&xml, flags(running))
    })
    .map_err(|e| crate::connection::err(&format!("removing the share from {name}"), e))?;
    crate::resize::save_record(&dom, &rec, running)?;
    Ok(if running {
        format!("removed {m} from {name}; unmounted now")
    } else {
        format!("removed {m} from {name}; the guest's fstab keeps a `nofail` line for it until you remove it there")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_is_read_from_the_domain_xml() {
        let ours = include_str!("../golden/domain-user.xml");
        assert!(memory_is_shared(ours));
        let old = ours.replace("<access mode=\"shared\"/>", "");
        assert!(!memory_is_shared(&old));
        let libvirts = "<domain type='qemu'><name>a</name><memoryBacking>\n<source type='memfd'/>\n<access mode='shared'/>\n</memoryBacking><devices><disk/></devices></domain>";
        assert!(memory_is_shared(libvirts));
        assert!(!memory_is_shared(
            "<domain type='qemu'><name>a</name></domain>"
        ));
    }
}
