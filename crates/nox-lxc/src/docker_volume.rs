//! The Docker volume: `/var/lib/docker` of a container with nesting, kept in a directory of
//! its own on the host (`LXCPATH/NAME/docker`) and bind-mounted in.
//!
//! Why: a container's root is an overlay, and the kernel refuses an overlay whose upper
//! directory is itself on an overlay, so Docker there falls back to its vfs driver (a full
//! copy of every layer). On an ordinary host filesystem (ext4, xfs, btrfs) the kernel allows
//! overlayfs inside the container's user namespace, and Docker uses overlay2.
//!
//! The directory belongs to the container's root (root's subordinate uid/gid for an
//! unprivileged container), lives inside the container's directory so `nox delete` removes it
//! with everything else, and is archived beside the root filesystem by `nox backup`.

use std::path::{Path, PathBuf};

use nox_core::{Error, InstanceName};

use crate::config::Entry;

/// The volume's directory name inside the container's directory.
pub const DIR: &str = "docker";

/// Where a container's Docker volume lives on the host: the one path to add wherever a
/// container's files are copied whole (backups, snapshots).
pub fn host_path(lxcpath: &Path, name: &InstanceName) -> PathBuf {
    lxcpath.join(name.as_str()).join(DIR)
}

/// The bind mount that puts `volume` at the container's `/var/lib/docker`.
pub fn mount_entry(volume: &Path) -> Entry {
    Entry {
        key: "lxc.mount.entry",
        value: format!("{} var/lib/docker none bind,create=dir 0 0", volume.display()),
        why: Some("nesting: /var/lib/docker on the host's filesystem, not on the overlay root, so Docker can use overlay2 (an overlay cannot sit on an overlay)"),
    }
}

/// Makes the volume (once; an existing one is kept), owned by the container's root. `mode`
/// 0711 as dockerd itself makes it: others may traverse to published paths, not list.
pub fn create(volume: &Path, owner: Option<(u32, u32)>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    check_path(volume)?;
    std::fs::create_dir_all(volume)
        .map_err(|e| Error::io(format!("creating {}", volume.display()), e))?;
    std::fs::set_permissions(volume, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| Error::io(format!("setting the mode of {}", volume.display()), e))?;
    crate::create::chown(volume, owner)
}

/// LXC reads a mount entry as fstab does, split on whitespace: a path with a space in it
/// (from `[lxc] lxcpath`) would be cut in two.
fn check_path(volume: &Path) -> Result<(), Error> {
    if volume
        .display()
        .to_string()
        .chars()
        .any(char::is_whitespace)
    {
        return Err(Error::failed(
            format!(
                "cannot bind {} into a container: LXC mount entries cannot hold whitespace",
                volume.display()
            ),
            "set [lxc] lxcpath to a path without spaces",
        ));
    }
    Ok(())
}

/// Why Docker would still fall back to vfs on the filesystem holding `volume`, if it would:
/// the kernel refuses an overlay's upper directory on an overlay.
pub fn unsuitable_host_fs(volume: &Path) -> Option<String> {
    let probe = volume
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let st = nix::sys::statfs::statfs(probe).ok()?;
    (st.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC).then(|| {
        format!(
            "{} is on overlayfs: Docker in this container will fall back to the vfs driver; put [lxc] lxcpath on an ordinary filesystem (ext4, xfs, btrfs) for overlay2",
            probe.display()
        )
    })
}

/// The container root's host uid and gid, from the config's `lxc.idmap` lines (`None`: a
/// privileged container, root is root).
pub fn owner_from_config(text: &str) -> Option<(u32, u32)> {
    let (mut uid, mut gid) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != "lxc.idmap" {
            continue;
        }
        if let [kind, "0", start, _] = v.split_whitespace().collect::<Vec<_>>()[..] {
            match kind {
                "u" => uid = start.parse().ok(),
                "g" => gid = start.parse().ok(),
                _ => {}
            }
        }
    }
    Some((uid?, gid?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_is_in_the_container_directory_and_bound_to_var_lib_docker() {
        let name: InstanceName = "web".parse().unwrap();
        let p = host_path(Path::new("/var/lib/lxc"), &name);
        assert_eq!(p, Path::new("/var/lib/lxc/web/docker"));
        assert_eq!(
            mount_entry(&p).value,
            "/var/lib/lxc/web/docker var/lib/docker none bind,create=dir 0 0"
        );
        let e = check_path(Path::new("/var/lib/my lxc/web/docker")).unwrap_err();
        assert!(e.to_string().contains("whitespace"), "{e}");
    }

    #[test]
    fn the_owner_is_read_from_the_id_map() {
        let unpriv =
            "lxc.arch = x86_64\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n";
        assert_eq!(owner_from_config(unpriv), Some((100000, 200000)));
        assert_eq!(owner_from_config("lxc.arch = x86_64\n"), None);
    }

    #[test]
    fn a_volume_is_made_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("web").join(DIR);
        create(&v, None).unwrap();
        std::fs::write(v.join("kept"), "x").unwrap();
        create(&v, None).unwrap();
        assert!(v.join("kept").exists());
        assert_eq!(
            std::fs::metadata(&v).unwrap().permissions().mode() & 0o777,
            0o711
        );
        // tmpdirs here are on an ordinary filesystem.
        assert_eq!(unsuitable_host_fs(&v), None);
    }
}
