//! A small filesystem of its own for a test: an ext4 image file mounted with `mount -o loop`,
//! so a test can fill a disk without touching the host's. Unmounted and removed on drop
//! (panics included); the fixture's sweep unmounts what a killed run left.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted loop filesystem; unmounted on drop.
#[derive(Debug)]
pub struct LoopFs {
    image: PathBuf,
    pub mountpoint: PathBuf,
}

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopFs {
    /// Makes a `mib` MiB ext4 image in `dir` and mounts it at `dir/mnt`.
    pub fn new(dir: &Path, mib: u64) -> LoopFs {
        let image = dir.join("loopfs.img");
        let mountpoint = dir.join("mnt");
        std::fs::create_dir_all(&mountpoint).expect("creating the mountpoint");
        let f = std::fs::File::create(&image).expect("creating the image file");
        f.set_len(mib << 20).expect("sizing the image file");
        drop(f);
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        );
        // From here on the guard owns the mount, so a failing assertion still unmounts.
        let fs = LoopFs { image, mountpoint };
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                fs.image.as_os_str(),
                fs.mountpoint.as_os_str(),
            ],
        );
        fs
    }

    /// Bytes an unprivileged writer can still write there.
    pub fn available(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.mountpoint).expect("statvfs");
        s.blocks_available() * s.fragment_size()
    }

    /// Takes all but `leave` bytes of the free space with a file (blocks really allocated,
    /// not a sparse file), and returns its path.
    pub fn fill_leaving(&self, leave: u64) -> PathBuf {
        use std::os::fd::AsRawFd;
        let path = self.mountpoint.join("filler");
        let f = std::fs::File::create(&path).expect("creating the filler");
        let len = self.available().saturating_sub(leave);
        // SAFETY: a valid open file descriptor; fallocate only allocates blocks to it.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
        assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
        f.sync_all().expect("syncing the filler");
        path
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}

/// Unmounts `mountpoint`; lazily if something still holds it, so the loop device is freed
/// once the last user goes.
pub fn unmount(mountpoint: &Path) {
    let plain = Command::new("umount").arg(mountpoint).output();
    if !plain.is_ok_and(|o| o.status.success()) {
        let _ = Command::new("umount").arg("-l").arg(mountpoint).output();
    }
}

/// Every mountpoint at or below `dir`, deepest first (from /proc/self/mountinfo, where
/// spaces and the like in a path are octal escapes).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
