//! A VM restored under a new name must not be the original machine: nox-core's identity files
//! (machine-id, Tailscale's node state, ...) are reset in its disk before it first boots, as a
//! container's are in its root directory. Once the guest runs it is too late: tailscaled would
//! already have presented the original's node key.
//!
//! The restore writes the disk as a sparse raw image first; each ext2/3/4 filesystem on it
//! (on an MBR or GPT partition, or on the whole disk) that holds `/etc/os-release` is edited
//! with e2fsprogs' `debugfs`, in user space. The host kernel never mounts it: a backup (from a
//! bucket, say) is untrusted input, and parsing it as root in the kernel's filesystem code is
//! what libguestfs exists to avoid. A journal left unreplayed (a crash-consistent backup) is
//! replayed first with `e2fsck -E journal_only`, or the replay at boot would undo the edits.
//! Other filesystems (XFS, btrfs, LVM, LUKS) are left as they are, with a warning that says
//! what to reset by hand.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nox_core::backup::identity::{Reset, IDENTITY_FILES, TAILSCALE_STATE};
use nox_core::host::{Cmd, Runner};
use nox_core::{Error, Progress};

/// What the reset did to a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Root filesystems edited.
    pub filesystems: usize,
    /// Identity files that were there and were reset (in any of them).
    pub reset: Vec<&'static str>,
}

/// Resets the identity files in every ext root filesystem of the raw image `raw`, warning
/// through `progress` when there is none nox can edit.
pub fn reset_in_image(
    runner: &dyn Runner,
    raw: &Path,
    target: &str,
    progress: &dyn Progress,
) -> Result<Outcome, Error> {
    progress.step(&format!("giving {target} its own machine identity"));
    let file = File::open(raw).map_err(|e| Error::io(format!("reading {}", raw.display()), e))?;
    let mut outcome = Outcome::default();
    for offset in filesystem_offsets(&file) {
        let Some(sb) = superblock(&file, offset) else {
            continue;
        };
        let fs = Fs::new(raw, offset)?;
        if fs.stat(runner, "/etc/os-release")?.is_none() {
            continue;
        }
        if sb.needs_recovery {
            fs.replay_journal(runner)?;
        }
        outcome.reset.extend(fs.reset(runner)?);
        outcome.filesystems += 1;
    }
    progress.done();
    if outcome.filesystems == 0 {
        progress.warn(&format!(
            "{target}'s disk has no ext2/3/4 root filesystem nox can edit: it keeps the original's machine-id and Tailscale state; in the guest, empty /etc/machine-id, remove {TAILSCALE_STATE} and reboot"
        ));
    } else if outcome.reset.contains(&TAILSCALE_STATE) {
        progress.warn(&nox_core::backup::identity::tailscale_note(target));
    }
    Ok(outcome)
}

/// Where filesystems may start: each partition of an MBR or GPT table, or the whole disk when
/// there is no table. Logical partitions inside an extended one are not looked into.
fn filesystem_offsets(file: &File) -> Vec<u64> {
    match bootsector::list_partitions(file, &bootsector::Options::default()) {
        Ok(parts) => parts.iter().map(|p| p.first_byte).collect(),
        Err(_) => vec![0],
    }
}

/// The superblock facts the reset needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Superblock {
    /// The journal holds transactions not yet written to their place (`INCOMPAT_RECOVER`).
    needs_recovery: bool,
}

/// The ext2/3/4 superblock at `offset`, or `None` when there is none.
fn superblock(file: &File, offset: u64) -> Option<Superblock> {
    // The superblock is 1024 bytes in; its magic 0xEF53 at 0x38, s_feature_incompat at 0x60.
    let mut sb = [0u8; 0x64];
    file.read_exact_at(&mut sb, offset.checked_add(1024)?)
        .ok()?;
    parse_superblock(&sb)
}

fn parse_superblock(sb: &[u8]) -> Option<Superblock> {
    const MAGIC: u16 = 0xEF53;
    const INCOMPAT_RECOVER: u32 = 0x4;
    let magic = u16::from_le_bytes(sb.get(0x38..0x3a)?.try_into().ok()?);
    if magic != MAGIC {
        return None;
    }
    let incompat = u32::from_le_bytes(sb.get(0x60..0x64)?.try_into().ok()?);
    Some(Superblock {
        needs_recovery: incompat & INCOMPAT_RECOVER != 0,
    })
}

/// One filesystem of the image, as e2fsprogs names it: `FILE?offset=N`, run from the image's
/// directory so no configured path (which could hold a `?`) is ever parsed by e2fsprogs.
#[derive(Debug)]
struct Fs {
    dir: std::path::PathBuf,
    device: String,
}

/// What `debugfs stat` says of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    kind: String,
    size: u64,
}

impl Fs {
    fn new(raw: &Path, offset: u64) -> Result<Fs, Error> {
        let (Some(dir), Some(name)) = (raw.parent(), raw.file_name()) else {
            return Err(Error::failure(format!("{} is not a file", raw.display())));
        };
        Ok(Fs {
            dir: dir.to_path_buf(),
            device: format!("{}?offset={offset}", name.to_string_lossy()),
        })
    }

    fn cmd(&self, program: &str) -> Cmd {
        Cmd::new(program)
            .package("e2fsprogs")
            .current_dir(self.dir.clone())
    }

    /// `path`'s type and size, without following a final symlink; `None` when absent.
    fn stat(&self, runner: &dyn Runner, path: &str) -> Result<Option<Stat>, Error> {
        // debugfs exits 0 either way; only what it prints tells.
        let out = runner.run(
            &self
                .cmd("debugfs")
                .args(["-R", &format!("stat {path}")])
                .arg(&self.device),
        )?;
        Ok(parse_stat(&out.stdout_text()))
    }

    /// Replays the journal (and nothing else) so the edits are not undone at boot.
    fn replay_journal(&self, runner: &dyn Runner) -> Result<(), Error> {
        let cmd = self
            .cmd("e2fsck")
            .args(["-E", "journal_only", "-p"])
            .arg(&self.device);
        let out = runner.execute(
            &cmd,
            nox_core::host::Stdin::Null,
            nox_core::host::Stdout::Capture,
        )?;
        // 0: clean, 1: the journal was replayed; anything else is damage.
        match out.code {
            Some(0 | 1) => Ok(()),
            _ => out.check(&cmd).map(|_| ()),
        }
    }

    /// Resets every identity file present; returns those reset.
    fn reset(&self, runner: &dyn Runner) -> Result<Vec<&'static str>, Error> {
        let mut script = String::new();
        let mut reset = Vec::new();
        for f in IDENTITY_FILES {
            let Some(st) = self.stat(runner, f.path)? else {
                continue;
            };
            match (f.reset, st.kind.as_str()) {
                (Reset::Remove, "regular" | "symlink") => {
                    script.push_str(&format!("rm {}\n", f.path));
                }
                (Reset::Empty, "regular") if st.size > 0 => {
                    // Truncated in place: its owner, mode and SELinux label stay.
                    script.push_str(&format!("punch {0} 0\nsif {0} size 0\n", f.path));
                }
                _ => continue,
            }
            reset.push(f.path);
        }
        if reset.is_empty() {
            return Ok(reset);
        }
        runner.run_with_input(
            &self
                .cmd("debugfs")
                .args(["-w", "-f", "-"])
                .arg(&self.device),
            script.as_bytes(),
        )?;
        // debugfs reports a failed command on its output and exits 0: check the result.
        for path in &reset {
            let after = self.stat(runner, path)?;
            let done = match after {
                None => true,
                Some(st) => st.kind == "regular" && st.size == 0 && !removes(path),
            };
            if !done {
                return Err(Error::failed(
                    format!("could not reset {path} in the restored disk"),
                    "restore again; if it fails again, restore under the original name and reset it in the guest",
                ));
            }
        }
        Ok(reset)
    }
}

fn removes(path: &str) -> bool {
    IDENTITY_FILES
        .iter()
        .any(|f| f.path == path && f.reset == Reset::Remove)
}

/// Reads `debugfs stat`'s `Type: regular` and `Size: 42`; `None` when it found nothing.
fn parse_stat(out: &str) -> Option<Stat> {
    let word_after = |key: &str| {
        out.split(key)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(String::from)
    };
    let kind = word_after("Type: ")?;
    let size = word_after("Size: ")?.parse().ok()?;
    Some(Stat { kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nox_core::host::SystemRunner;
    use nox_core::progress::Quiet;
    use std::process::Command;

    #[test]
    fn stat_output_is_read_and_nothing_found_is_none() {
        let out = "Inode: 1215   Type: regular    Mode:  0444   Flags: 0x80000\n\
                   Generation: 2063606249    Version: 0x00000000:00000002\n\
                   User:     0   Group:     0   Project:     0   Size: 33\n";
        assert_eq!(
            parse_stat(out),
            Some(Stat {
                kind: "regular".into(),
                size: 33
            })
        );
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn superblocks_are_recognised_with_their_recovery_flag() {
        let mut sb = vec![0u8; 0x64];
        assert_eq!(parse_superblock(&sb), None);
        sb[0x38..0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        assert_eq!(
            parse_superblock(&sb),
            Some(Superblock {
                needs_recovery: false
            })
        );
        sb[0x60..0x64].copy_from_slice(&0x246u32.to_le_bytes());
        assert_eq!(
            parse_superblock(&sb),
            Some(Superblock {
                needs_recovery: true
            })
        );
        assert_eq!(parse_superblock(&sb[..0x40]), None);
    }

    fn have(program: &str) -> bool {
        SystemRunner.find_program(program).is_some()
    }

    fn sh(program: &str, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A real ext4 filesystem on an MBR partition (made by mke2fs, filled by debugfs, as a
    /// guest's disk would be) loses its identity files and nothing else, and stays clean for
    /// e2fsck. e2fsprogs is part of every Debian system; without it the test says so and fails.
    #[test]
    fn an_ext4_root_on_a_partition_loses_its_identity_and_stays_clean() {
        assert!(
            have("mkfs.ext4") && have("debugfs") && have("e2fsck"),
            "e2fsprogs is needed (apt-get install e2fsprogs)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("disk.raw");
        let offset = 1u64 << 20;
        let f = File::create(&raw).unwrap();
        f.set_len(offset + (32 << 20)).unwrap();
        // One MBR entry: type 0x83 from sector 2048, the rest of the disk.
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&((32u32 << 20) / 512).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        f.write_all_at(&mbr, 0).unwrap();
        drop(f);
        let raw_s = raw.display().to_string();
        sh(
            "mkfs.ext4",
            &["-q", "-F", "-E", &format!("offset={offset}"), &raw_s, "32M"],
            None,
        );
        let content = tmp.path().join("content");
        std::fs::write(&content, "0123456789abcdef\n").unwrap();
        let c = content.display().to_string();
        let dev = format!("{raw_s}?offset={offset}");
        sh(
            "debugfs",
            &["-w", "-f", "-", &dev],
            Some(&format!(
                "mkdir /etc\nmkdir /var\nmkdir /var/lib\nmkdir /var/lib/tailscale\n\
                 write {c} /etc/os-release\nwrite {c} /etc/hostname\n\
                 cd /etc\nwrite {c} machine-id\nsif machine-id mode 0100444\n\
                 cd /var/lib/tailscale\nwrite {c} tailscaled.state\nwrite {c} derpmap.cached.json\n"
            )),
        );
        let fs = Fs::new(&raw, offset).unwrap();
        assert!(fs.stat(&SystemRunner, "/etc/hostname").unwrap().is_some());

        let out = reset_in_image(&SystemRunner, &raw, "copy", &Quiet).unwrap();
        assert_eq!(out.filesystems, 1);
        assert_eq!(out.reset, ["/etc/machine-id", TAILSCALE_STATE]);
        let mid = fs.stat(&SystemRunner, "/etc/machine-id").unwrap().unwrap();
        assert_eq!((mid.kind.as_str(), mid.size), ("regular", 0));
        let mode = sh("debugfs", &["-R", "stat /etc/machine-id", &dev], None);
        assert!(mode.contains("Mode:  0444"), "{mode}");
        assert_eq!(fs.stat(&SystemRunner, TAILSCALE_STATE).unwrap(), None);
        for kept in ["/etc/hostname", "/var/lib/tailscale/derpmap.cached.json"] {
            assert_eq!(
                fs.stat(&SystemRunner, kept).unwrap().map(|s| s.size),
                Some(17),
                "{kept}"
            );
        }
        // No leaked blocks or inodes: a forced check finds nothing to fix.
        sh("e2fsck", &["-f", "-n", &dev], None);
        // Again: nothing left to reset.
        assert!(reset_in_image(&SystemRunner, &raw, "copy", &Quiet)
            .unwrap()
            .reset
            .is_empty());
    }

    #[test]
    fn a_disk_without_an_ext_root_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
        let out = reset_in_image(&SystemRunner, &raw, "copy", &Quiet).unwrap();
        assert_eq!(out, Outcome::default());
    }
}
