//! Container backups: the whole root filesystem as one tarball (GNU tar, numeric owners,
//! xattrs, ACLs, device nodes), compressed with zstd on the way to the backup, hashed as it is
//! written. A backup is self-contained: it restores without the image it was created from.
//!
//! Consistency: a running container is frozen (cgroup freezer) while tar reads it through
//! `/proc/PID/root`, so every process sees one point in time; `--stop` shuts it down cleanly
//! instead and starts it again afterwards. Either way the backup is application-consistent.
//!
//! Ids are stored as they are on the host's disk (shifted into root's subordinate range for an
//! unprivileged container) and the manifest records that range. A restore onto a host whose
//! range differs shifts every owner into the new range, so an unprivileged container stays
//! unprivileged.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nox_core::backup::{
    private_file, BackupKind, BackupRequest, Consistency, HashingWriter, IdMap, LocalBackup,
    LxcBackup, Manifest, RestoreOptions, FORMAT,
};
use nox_core::cloud_init::Provisioning;
use nox_core::host::{Cmd, PrivateMount, Runner, Stdin, Stdout};
use nox_core::instance::{Instance, InstanceSpec};
use nox_core::{interrupt, BackendKind, Error, InstanceName, Progress};

use crate::cgroup::CgroupLayout;
use crate::config::{ContainerConfig, Mode};
use crate::liblxc::{Container, LOG_FILE};
use crate::record::CtRecord;
use crate::{create, ready, LxcBackend};

const ROOTFS_FILE: &str = "rootfs.tar.zst";
/// The Docker volume (docker_volume.rs), archived beside the root filesystem.
const DOCKER_FILE: &str = "docker.tar.zst";
/// zstd level 3 (its default): most of the ratio at a fraction of the time of higher levels.
const ZSTD_LEVEL: i32 = 3;

/// The container's `lxc.rootfs.path` and id map, read back from the config nox wrote.
pub(crate) struct OnDisk {
    pub(crate) rootfs: String,
    idmap: Option<IdMap>,
    /// `lxc.rootfs.options` has `userxattr`: the overlay keeps its whiteouts and opaque
    /// markers in user.* xattrs, so nox's own mount of it must say so too.
    userxattr: bool,
}

pub(crate) fn read_config(dir: &Path) -> Result<OnDisk, Error> {
    let path = dir.join("config");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut rootfs = None;
    let mut userxattr = false;
    let (mut uid, mut gid, mut count) = (None, None, 0);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "lxc.rootfs.path" => rootfs = Some(v.to_string()),
            "lxc.rootfs.options" => userxattr = v.split(',').any(|o| o.trim() == "userxattr"),
            "lxc.idmap" => {
                let f: Vec<&str> = v.split_whitespace().collect();
                if let [kind, "0", start, n] = f[..] {
                    let start = start.parse::<u32>().ok();
                    count = n.parse().unwrap_or(0);
                    match kind {
                        "u" => uid = start,
                        "g" => gid = start,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let rootfs = rootfs
        .ok_or_else(|| Error::failure(format!("{} has no lxc.rootfs.path", path.display())))?;
    let idmap = match (uid, gid) {
        (Some(uid_start), Some(gid_start)) => Some(IdMap {
            uid_start,
            gid_start,
            count,
        }),
        _ => None,
    };
    Ok(OnDisk {
        rootfs,
        idmap,
        userxattr,
    })
}

/// Thaws (or restarts) the container however the backup ends.
struct Resume<'c> {
    c: &'c Container,
    thaw: bool,
    restart: bool,
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if self.thaw {
            let _ = self.c.unfreeze();
        }
        if self.restart {
            let _ = self.c.start();
        }
    }
}

pub fn backup(
    b: &LxcBackend,
    name: &InstanceName,
    req: &BackupRequest<'_>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<Manifest, Error> {
    let (c, rec) = crate::list::find(b, name)?;
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let on_disk = read_config(&dir)?;
    let created_at = nox_core::backup::rfc3339(std::time::SystemTime::now());
    // nox never leaves a container frozen on purpose: a frozen one is what a killed backup
    // left, and it must run again.
    if c.state() == "FROZEN" {
        progress.warn(&format!(
            "{name} was left frozen by an interrupted backup: thawing it"
        ));
        c.unfreeze().map_err(Error::from)?;
    }
    let was_running = c.is_running();
    let mut resume = Resume {
        c: &c,
        thaw: false,
        restart: false,
    };
    let note;
    if was_running && req.stop {
        progress.step(&format!("stopping {name} for the backup"));
        if !c.shutdown(60) {
            progress.warn(&format!("{name} did not shut down within 60s: killing it"));
            c.stop().map_err(Error::from)?;
        }
        resume.restart = true;
        note = "stopped cleanly for the backup (--stop), started again after".to_string();
    } else if was_running {
        progress.step(&format!("freezing {name}"));
        c.freeze().map_err(Error::from)?;
        resume.thaw = true;
        nox_core::fault::point("lxc.backup.frozen");
        note = "every process frozen (cgroup freezer) while the filesystem was read".to_string();
    } else {
        note = "the container was stopped".to_string();
    }
    interrupt::check()?;
    progress.step(&format!("archiving {name}'s filesystem"));
    let source = if was_running && !req.stop {
        let pid = c
            .init_pid()
            .ok_or_else(|| Error::failure(format!("{name} has no init process")))?;
        Source::Dir(PathBuf::from(format!("/proc/{pid}/root")))
    } else {
        Source::from_rootfs(&on_disk.rootfs, &dir)?.with_userxattr(on_disk.userxattr)
    };
    let entry = archive(&*b.host.runner, &source, staging, ROOTFS_FILE, progress)?;
    let mut files = vec![entry];
    // The Docker volume is read on the host, in the same frozen (or stopped) moment.
    let volume = crate::docker_volume::host_path(&b.config.lxc.lxcpath, name);
    let docker_file = if volume.is_dir() {
        progress.step(&format!("archiving {name}'s Docker volume"));
        let source = Source::Dir(volume);
        files.push(archive(
            &*b.host.runner,
            &source,
            staging,
            DOCKER_FILE,
            progress,
        )?);
        Some(DOCKER_FILE.to_string())
    } else {
        None
    };
    drop(resume);
    progress.done();

    Ok(Manifest {
        format: FORMAT,
        nox_version: env!("CARGO_PKG_VERSION").into(),
        id: req.id.into(),
        instance: name.to_string(),
        backend: BackendKind::Lxc,
        created_at,
        kind: BackupKind::Full,
        parent: None,
        consistency: Consistency::Application,
        note: Some(note),
        spec: rec.spec.clone(),
        autostart: rec.spec.autostart,
        was_running,
        vm: None,
        incus: None,
        lxc: Some(LxcBackup {
            idmap: on_disk.idmap,
            tun: rec.tun,
            mac: rec.mac.clone(),
            cloud_init: rec.cloud_init,
            provisioned: rec.provisioned,
            rootfs_file: ROOTFS_FILE.into(),
            docker_file,
        }),
        files,
        encryption: None,
    })
}

/// What tar reads.
enum Source {
    /// A directory as it is (a running container's root, or a plain rootfs).
    Dir(PathBuf),
    /// A stopped overlay container: mounted in tar's own mount namespace only, so the mount
    /// can never outlive tar (not even when nox is killed).
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        mountpoint: PathBuf,
        userxattr: bool,
    },
}

impl Source {
    fn from_rootfs(rootfs: &str, dir: &Path) -> Result<Source, Error> {
        if let Some(rest) = rootfs.strip_prefix("overlay:") {
            let (lower, upper) = rest.split_once(':').ok_or_else(|| {
                Error::failure(format!("cannot read the overlay rootfs {rootfs:?}"))
            })?;
            return Ok(Source::Overlay {
                lower: lower.into(),
                upper: upper.into(),
                work: dir.join("work"),
                mountpoint: dir.join(".nox-backup-root"),
                userxattr: false,
            });
        }
        Ok(Source::Dir(
            rootfs.strip_prefix("dir:").unwrap_or(rootfs).into(),
        ))
    }

    fn with_userxattr(mut self, on: bool) -> Source {
        if let Source::Overlay { userxattr, .. } = &mut self {
            *userxattr = on;
        }
        self
    }

    fn root(&self) -> &Path {
        match self {
            Source::Dir(d) => d,
            Source::Overlay { mountpoint, .. } => mountpoint,
        }
    }
}

/// Runs tar over `source` and streams its output through zstd into `staging/file_name`.
fn archive(
    runner: &dyn Runner,
    source: &Source,
    staging: &Path,
    file_name: &str,
    progress: &dyn Progress,
) -> Result<nox_core::backup::FileEntry, Error> {
    let mut cmd = Cmd::new("tar")
        .package("tar")
        .args([
            "--create",
            "--file=-",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--sparse",
            // The container's own mounts (proc, sys, dev, run) are not its filesystem.
            "--one-file-system",
            "--directory",
        ])
        .arg(source.root())
        .arg(".");
    if let Source::Overlay {
        lower,
        upper,
        work,
        mountpoint,
        userxattr,
    } = source
    {
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| Error::io(format!("creating {}", mountpoint.display()), e))?;
        cmd = cmd.in_private_mount(PrivateMount::overlay(
            lower, upper, work, mountpoint, *userxattr,
        )?);
    }
    let path = staging.join(file_name);
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let file = private_file(&path)?;
    let mut enc = zstd::stream::Encoder::new(HashingWriter::new(file), ZSTD_LEVEL).map_err(io)?;
    // Both cores: zstd's worker threads compress while tar reads.
    let _ = enc.multithread(2);
    let mut sink = CountingWriter {
        inner: &mut enc,
        written: 0,
        progress,
        failed: None,
    };
    let end = runner.execute(&cmd, Stdin::Null, Stdout::Stream(&mut sink));
    if let Source::Overlay { mountpoint, .. } = source {
        let _ = std::fs::remove_dir(mountpoint);
    }
    // A write to the backup that failed (a full disk) is the store's fault, not tar's: say
    // which file, not "talking to a program".
    if let Some(e) = sink.failed.take() {
        return Err(io(e));
    }
    let end = end?;
    // GNU tar exits 1 when "some files changed while being read". In a frozen or stopped
    // container only the mountpoints of pseudo filesystems (sys, proc) can, whose contents
    // are not archived; anything else is a failure.
    let only_mountpoints_changed = end.code == Some(1)
        && String::from_utf8_lossy(&end.stderr)
            .lines()
            .all(|l| l.ends_with("file changed as we read it"));
    if !only_mountpoints_changed {
        end.check(&cmd)?;
    }
    let (_, size, sha256) = enc.finish().map_err(io)?.finish();
    Ok(nox_core::backup::FileEntry {
        name: file_name.into(),
        size,
        sha256,
    })
}

/// Counts what passes through into progress, and keeps the first write error (the runner
/// that writes into it reports its own context).
struct CountingWriter<'p, W> {
    inner: W,
    written: u64,
    progress: &'p dyn Progress,
    failed: Option<std::io::Error>,
}

impl<W> CountingWriter<'_, W> {
    /// Passes `r` on, keeping a copy of its error (same OS code and message).
    fn keep<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            if self.failed.is_none() {
                self.failed = Some(match e.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(e.kind(), e.to_string()),
                });
            }
        }
        r
    }
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        let n = self.keep(r)?;
        self.written += n as u64;
        self.progress.bytes(self.written, None);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

/// Removes the half-restored container unless committed, stopping it first if it was started
/// (its files gone, a running one would be an orphan nox cannot see, holding its address).
struct Undo {
    dir: PathBuf,
    committed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let (Some(lxcpath), Some(name)) = (self.dir.parent(), self.dir.file_name()) else {
            return;
        };
        if let Ok(c) = Container::new(&name.to_string_lossy(), lxcpath) {
            if c.is_running() {
                let _ = c.stop();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn restore(
    b: &LxcBackend,
    chain: &[LocalBackup],
    target: &InstanceName,
    options: RestoreOptions,
    progress: &dyn Progress,
) -> Result<Instance, Error> {
    let backup = chain
        .last()
        .ok_or_else(|| Error::failure("empty backup chain"))?;
    let m = &backup.manifest;
    let info = m.lxc.as_ref().ok_or_else(|| {
        Error::failed(
            format!("backup {}/{} has no container section", m.instance, m.id),
            "the manifest is damaged",
        )
    })?;
    let lxcpath = &b.config.lxc.lxcpath;
    let dir = lxcpath.join(target.as_str());
    if dir.join("config").exists() || dir.join(crate::record::FILE).exists() {
        return Err(Error::AlreadyExists {
            name: target.to_string(),
            backend: "lxc".into(),
        });
    }
    let mut spec: InstanceSpec = m.spec.clone();
    spec.name = target.clone();
    spec.autostart = m.autostart;
    // The same checks as create (bridge, subordinate ids); TUN as the container had it.
    spec.tun = info.tun;
    // Shared folders are host directories, not in the backup: restored without them.
    spec.mounts.clear();
    let (mode, bridge) = create::preflight(b, &spec)?;
    let owner = match (&mode, info.idmap) {
        (
            Mode::Unprivileged {
                uid_start,
                gid_start,
                ..
            },
            Some(_),
        ) => Some((*uid_start, *gid_start)),
        (Mode::Privileged, None) => None,
        _ => {
            return Err(Error::failed(
                "the backup's id map does not match its privileged flag",
                "the manifest is damaged",
            ))
        }
    };
    let layout = CgroupLayout::detect().map_err(|e| Error::io("reading /sys/fs/cgroup", e))?;
    let limits = create::limits(layout, &spec, progress);

    let mut undo = Undo {
        dir: dir.clone(),
        committed: false,
    };
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)
        .map_err(|e| Error::io(format!("creating {}", rootfs.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("setting the mode of {}", dir.display()), e))?;
    create::chown(&rootfs, owner)?;

    progress.step(&format!("unpacking {}'s filesystem", target));
    extract(
        &*b.host.runner,
        &backup.file(&info.rootfs_file),
        &rootfs,
        progress,
    )?;
    progress.done();
    nox_core::fault::point("lxc.restore.unpacked");
    if let (Some(old), Some((uid, gid))) = (info.idmap, owner) {
        if old.uid_start != uid || old.gid_start != gid {
            progress.step("moving file owners into this host's id range");
            shift_ids(&rootfs, old, uid, gid)?;
            progress.done();
        }
    }
    let docker_volume = if spec.nesting {
        let volume = crate::docker_volume::host_path(lxcpath, target);
        crate::docker_volume::create(&volume, owner)?;
        if let Some(file) = &info.docker_file {
            progress.step(&format!("unpacking {target}'s Docker volume"));
            extract(&*b.host.runner, &backup.file(file), &volume, progress)?;
            progress.done();
            if let (Some(old), Some((uid, gid))) = (info.idmap, owner) {
                if old.uid_start != uid || old.gid_start != gid {
                    shift_ids(&volume, old, uid, gid)?;
                }
            }
        }
        Some(volume)
    } else {
        None
    };
    interrupt::check()?;

    let mac = if options.new_identity {
        create::random_mac(&*b.host.facts)?
    } else {
        info.mac.clone()
    };
    if options.new_identity {
        // A new hostname, and for cloud-init a new instance id: it then treats the restored
        // container as a new machine (hostname, SSH host keys), as after a clone.
        create::write_file(
            &rootfs,
            &["etc"],
            "hostname",
            &format!("{target}\n"),
            0o644,
            owner,
        )?;
        // machine-id, Tailscale's node keys and the rest of nox-core's list: a copy must not
        // be the same machine (an empty machine-id makes systemd draw a new one at boot; a
        // copied one would make systemd-networkd's DHCP client id, and so the address, the
        // original's).
        let reset = nox_core::backup::identity::reset_in_root(&rootfs)?;
        if reset.contains(&nox_core::backup::identity::TAILSCALE_STATE) {
            progress.warn(&nox_core::backup::identity::tailscale_note(target.as_str()));
        }
        if info.cloud_init {
            create::write_seed(
                &rootfs,
                owner,
                &Provisioning {
                    instance_id: create::instance_id(&*b.host.facts)?,
                    hostname: target.to_string(),
                    user: spec.user.clone(),
                    ssh_keys: spec.ssh_keys.clone(),
                    password_hash: None,
                    mac: Some(mac.clone()),
                    mounts: Vec::new(),
                },
            )?;
        }
    }
    let config = ContainerConfig {
        name: target.to_string(),
        // A plain directory: the restored container needs no base image.
        rootfs: format!("dir:{}", rootfs.display()),
        mode: mode.clone(),
        bridge,
        mac: mac.clone(),
        limits,
        autostart: m.autostart,
        nesting: spec.nesting,
        docker_volume,
        layout,
        log_file: dir.join(LOG_FILE),
        // Shared folders are host directories, not part of a backup: a restored container
        // (maybe on another host) starts without them (`nox mount add` brings them back).
        mounts: Vec::new(),
    };
    let record = CtRecord {
        version: 1,
        spec: spec.clone(),
        tun: info.tun,
        mac,
        cloud_init: info.cloud_init,
        provisioned: info.provisioned,
        created_at: nox_core::backup::rfc3339(std::time::SystemTime::now()),
        // A restore is a new instance, maybe beside the original: forwards would clash.
        forwards: Vec::new(),
    };
    // The record goes before the config: a config without nox's record is someone else's
    // container, which recovery after a killed create or restore never touches.
    record
        .write(&dir)
        .map_err(|e| Error::io("writing nox's record", e))?;
    nox_core::fault::point("lxc.restore.record");
    std::fs::write(dir.join("config"), config.render())
        .map_err(|e| Error::io("writing the container config", e))?;
    nox_core::fault::point("lxc.restore.config");
    interrupt::check()?;
    if options.start {
        let c = Container::new(target.as_str(), lxcpath).map_err(Error::from)?;
        c.start().map_err(Error::from)?;
        ready::wait(&c, options.timeout, info.cloud_init, progress)?;
    }
    undo.committed = true;
    crate::list::status(b, target)
}

/// Unpacks a rootfs tarball (zstd) into `rootfs` as it was: owners, modes, xattrs, ACLs.
fn extract(
    runner: &dyn Runner,
    archive: &Path,
    rootfs: &Path,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let file = std::fs::File::open(archive)
        .map_err(|e| Error::io(format!("reading {}", archive.display()), e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let counting = CountingReader {
        inner: file,
        read: 0,
        total,
        progress,
    };
    let mut dec = zstd::stream::Decoder::new(counting)
        .map_err(|e| Error::io(format!("reading {}", archive.display()), e))?;
    let cmd = Cmd::new("tar")
        .package("tar")
        .args([
            "--extract",
            "--file=-",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--directory",
        ])
        .arg(rootfs);
    runner
        .feed(&cmd, &mut dec)
        .map(|_| ())
        .map_err(|e| e.context(format!("unpacking {}", archive.display())))
}

struct CountingReader<'p, R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.bytes(self.read, self.total);
        Ok(n)
    }
}

/// Moves every owner from the backup's id range to this host's (ids outside the old range are
/// left alone), keeping modes: chown clears set-id bits, so they are put back.
fn shift_ids(root: &Path, old: IdMap, uid: u32, gid: u32) -> Result<(), Error> {
    // The old range comes from the manifest: a count no host could map must fail here, not
    // wrap around into ids outside this host's range.
    let shift = |id: u32, old_start: u32, new_start: u32| {
        if id >= old_start && id - old_start < old.count.max(1) {
            (id - old_start).checked_add(new_start).ok_or_else(|| {
                Error::failed(
                    format!("owner {id} of the backup maps past the last id from {new_start}"),
                    "the backup's id map is not nox's (65536 ids); it was tampered with",
                )
            })
        } else {
            Ok(id)
        }
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        let (nu, ng) = (
            shift(meta.uid(), old.uid_start, uid)?,
            shift(meta.gid(), old.gid_start, gid)?,
        );
        std::os::unix::fs::lchown(&p, Some(nu), Some(ng))
            .map_err(|e| Error::io(format!("chowning {}", p.display()), e))?;
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| Error::io(format!("setting the mode of {}", p.display()), e))?;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))?
                .flatten()
            {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rootfs_and_idmap_from_the_config_nox_wrote() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config"),
            "lxc.rootfs.path = overlay:/b/rootfs:/l/web/delta\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n",
        )
        .unwrap();
        let d = read_config(dir.path()).unwrap();
        assert_eq!(d.rootfs, "overlay:/b/rootfs:/l/web/delta");
        assert_eq!(
            d.idmap,
            Some(IdMap {
                uid_start: 100000,
                gid_start: 200000,
                count: 65536
            })
        );
        match Source::from_rootfs(&d.rootfs, Path::new("/l/web")).unwrap() {
            Source::Overlay {
                lower, upper, work, ..
            } => {
                assert_eq!(lower, Path::new("/b/rootfs"));
                assert_eq!(upper, Path::new("/l/web/delta"));
                assert_eq!(work, Path::new("/l/web/work"));
            }
            Source::Dir(_) => panic!("overlay expected"),
        }
        std::fs::write(
            dir.path().join("config"),
            "lxc.rootfs.path = dir:/l/web/rootfs\n",
        )
        .unwrap();
        let d = read_config(dir.path()).unwrap();
        assert_eq!(d.idmap, None);
        assert!(
            matches!(Source::from_rootfs(&d.rootfs, dir.path()).unwrap(), Source::Dir(p) if p == Path::new("/l/web/rootfs"))
        );
    }
}
