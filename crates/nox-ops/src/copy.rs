//! `nox cp`: copies files and trees between the host and an instance, either way, written once
//! over the [`Backend`] trait.
//!
//! File content goes through the backend's own file path ([`Backend::read_guest_file`] and
//! [`Backend::write_guest_file`]: the guest agent's file calls for VMs, attached programs for
//! containers), streamed, never whole in memory. What a tree needs besides content (listing,
//! directories, links, modes, owners) runs in the guest through `exec_with` with argv, never a
//! shell string, and is batched: one command per directory list, per owner, per mode.
//!
//! Guest paths resolve inside the guest, so its symlinks lead only to its own files. On the host,
//! what the guest names (a listing it sends back) is checked before use: one plain name per
//! path component, no `..`, every parent a directory this copy made, files opened without
//! following a symlink. A guest cannot make nox write outside the destination.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nox_core::backend::ExecIo;
use nox_core::copy::{CopyEnd, EntryKind};
use nox_core::{Backend, Error, InstanceName, InstanceRef, Progress, Result};

use crate::context::Context;
use crate::ui::Ui;

/// How many paths one `chmod`, `chown` or `mkdir` gets, well below any argv limit.
const BATCH: usize = 200;

/// What was copied, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
    /// Entries left out (devices, sockets, fifos), one line each.
    pub skipped: Vec<String>,
    /// Owners the target could not take (an id outside a container's range, nox not root).
    pub warnings: Vec<String>,
}

/// `nox cp [-r] SRC DST`: exactly one side in an instance.
pub fn copy(ctx: &Context, src: &str, dst: &str, recursive: bool, ui: &dyn Ui) -> Result<Copied> {
    match (CopyEnd::parse(src)?, CopyEnd::parse(dst)?) {
        (CopyEnd::Host(from), CopyEnd::Guest { at, path }) => {
            let guest = Guest::new(ctx, &at)?;
            copy_in(&guest, &from, &path, recursive, ui.progress())
        }
        (CopyEnd::Guest { at, path }, CopyEnd::Host(to)) => {
            let guest = Guest::new(ctx, &at)?;
            copy_out(&guest, &path, &to, recursive, ui.progress())
        }
        (CopyEnd::Host(_), CopyEnd::Host(_)) => Err(Error::Usage(
            "both paths are on the host: one side must be NAME:/PATH in an instance (use cp for host copies)".into(),
        )),
        (CopyEnd::Guest { .. }, CopyEnd::Guest { .. }) => Err(Error::Usage(
            "both paths are in instances: copy out to the host, then in (one side must be a host path)".into(),
        )),
    }
}

/// One entry as the guest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (07777).
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

/// An instance, as `nox cp` talks to it.
struct Guest<'a> {
    b: &'a dyn Backend,
    at: &'a InstanceRef,
}

impl<'a> Guest<'a> {
    fn new(ctx: &'a Context, at: &'a InstanceRef) -> Result<Guest<'a>> {
        let b = ctx.backends.find(at)?;
        if let Some(remote) = at.remote() {
            return Err(nox_core::copy::unsupported(Some(remote), &at.name));
        }
        Ok(Guest { b, at })
    }

    fn name(&self) -> &InstanceName {
        &self.at.name
    }

    /// Runs `argv` in the guest; returns its exit code, stdout and stderr.
    fn run(&self, argv: &[String]) -> Result<(i32, Vec<u8>, String)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = self.b.exec_with(
            self.name(),
            argv,
            ExecIo {
                stdin: &[],
                stdout: &mut out,
                stderr: &mut err,
            },
        )?;
        Ok((code, out, String::from_utf8_lossy(&err).trim().to_string()))
    }

    /// Runs `argv` and fails, saying what `what` was, unless it succeeds.
    fn must(&self, what: &str, argv: Vec<String>) -> Result<Vec<u8>> {
        let (code, out, err) = self.run(&argv)?;
        if code != 0 {
            return Err(Error::failed(
                format!("{what} in {} failed: {}", self.at, first_line(&err, code)),
                format!(
                    "the guest needs GNU coreutils and findutils; try `nox exec {} -- {}`",
                    self.at,
                    argv.join(" ")
                ),
            ));
        }
        Ok(out)
    }

    /// What `path` is, following a symlink at `path` itself (as `cp` does with its
    /// arguments); `None` when nothing is there.
    fn stat(&self, path: &str) -> Result<Option<Meta>> {
        let argv = argv(&["find", "-H", path, "-maxdepth", "0", "-printf", STAT_FORMAT]);
        let (code, out, err) = self.run(&argv)?;
        if code != 0 {
            if err.contains("No such file") || err.contains("Not a directory") {
                return Ok(None);
            }
            return Err(Error::failed(
                format!(
                    "cannot look at {}:{path}: {}",
                    self.at,
                    first_line(&err, code)
                ),
                "the guest needs GNU findutils (`find -printf`)",
            ));
        }
        let text = String::from_utf8_lossy(&out);
        parse_meta(text.trim_end_matches(['\n', '\0']))
            .map(Some)
            .ok_or_else(|| {
                Error::failure(format!(
                    "the guest described {path} as {text:?}, which nox cannot read"
                ))
            })
    }

    /// Every entry under `dir`, parents before children, symlinks not followed.
    fn walk(&self, dir: &str) -> Result<Vec<(String, Meta, String)>> {
        let out = self.must(
            &format!("listing {dir}"),
            argv(&["find", "-P", dir, "-mindepth", "1", "-printf", LIST_FORMAT]),
        )?;
        parse_listing(&out).ok_or_else(|| {
            Error::failure(format!(
                "the guest's listing of {dir} is not one nox can read"
            ))
        })
    }

    /// Runs `program fixed... paths...` over `paths` in batches.
    fn batched(&self, what: &str, fixed: &[&str], paths: &[String]) -> Result<()> {
        for chunk in paths.chunks(BATCH) {
            let mut a = argv(fixed);
            a.push("--".into());
            a.extend(chunk.iter().cloned());
            self.must(what, a)?;
        }
        Ok(())
    }
}

/// `%y` type letter, `%m` octal mode, numeric owner and group, size.
const STAT_FORMAT: &str = "%y %m %U %G %s";
/// The same, then the path below the starting point and the link target, NUL-terminated
/// (names may hold any byte but NUL and '/').
const LIST_FORMAT: &str = "%y %m %U %G %s\\0%P\\0%l\\0";

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn first_line(err: &str, code: i32) -> String {
    err.lines()
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| format!("exit code {code}"))
}

fn parse_meta(s: &str) -> Option<Meta> {
    let mut f = s.split(' ');
    let kind = match f.next()? {
        "f" => EntryKind::File,
        "d" => EntryKind::Dir,
        "l" => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    let meta = Meta {
        kind,
        mode: u32::from_str_radix(f.next()?, 8).ok()? & 0o7777,
        uid: f.next()?.parse().ok()?,
        gid: f.next()?.parse().ok()?,
        size: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(meta)
}

/// `find -printf LIST_FORMAT` output: (relative path, meta, link target) per entry.
fn parse_listing(out: &[u8]) -> Option<Vec<(String, Meta, String)>> {
    if out.is_empty() {
        return Some(Vec::new());
    }
    let fields: Vec<&[u8]> = out.strip_suffix(b"\0")?.split(|&c| c == 0).collect();
    if fields.len() % 3 != 0 {
        return None;
    }
    fields
        .chunks(3)
        .map(|e| {
            let meta = parse_meta(std::str::from_utf8(e[0]).ok()?)?;
            // Paths that are not UTF-8 cannot travel as the agent's JSON strings.
            let rel = String::from_utf8(e[1].to_vec()).ok()?;
            let link = String::from_utf8(e[2].to_vec()).ok()?;
            Some((rel, meta, link))
        })
        .collect()
}

/// The last component of a path, for copying into a directory (`cp a dir/` makes `dir/a`).
fn base_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
}

fn guest_join(dir: &str, rel: &str) -> String {
    format!("{}/{rel}", dir.trim_end_matches('/'))
}

/// A relative path the guest sent, as host components: plain names only.
fn safe_relative(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let ok = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

/// Counts bytes as they pass and tells the progress bar.
struct Counted<'p, T> {
    inner: T,
    done: u64,
    total: u64,
    base: u64,
    progress: &'p dyn Progress,
}

impl<T> Counted<'_, T> {
    fn tick(&mut self, n: usize) {
        self.done += n as u64;
        self.progress.bytes(
            self.base + self.done,
            Some(self.total.max(self.base + self.done)),
        );
    }
}

impl<T: Read> Read for Counted<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tick(n);
        Ok(n)
    }
}

impl<T: Write> Write for Counted<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tick(n);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One host entry to copy in.
struct HostEntry {
    rel: PathBuf,
    path: PathBuf,
    meta: std::fs::Metadata,
}

fn host_kind(m: &std::fs::Metadata) -> EntryKind {
    let t = m.file_type();
    if t.is_file() {
        EntryKind::File
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    }
}

/// Every entry under `dir`, parents first, symlinks not followed.
fn host_walk(dir: &Path, rel: &Path, out: &mut Vec<HostEntry>) -> Result<()> {
    let read =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut names: Vec<_> = read
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let r = rel.join(&n);
        let is_dir = meta.is_dir();
        out.push(HostEntry {
            rel: r.clone(),
            path: path.clone(),
            meta,
        });
        if is_dir {
            host_walk(&path, &r, out)?;
        }
    }
    Ok(())
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "{}: nox cp copies only paths that are UTF-8 (the agent speaks JSON strings)",
            p.display()
        ))
    })
}

fn copy_in(
    guest: &Guest<'_>,
    from: &Path,
    to: &str,
    recursive: bool,
    progress: &dyn Progress,
) -> Result<Copied> {
    use std::os::unix::fs::MetadataExt;
    let top =
        std::fs::metadata(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    if top.is_dir() && !recursive {
        return Err(Error::Usage(format!(
            "{} is a directory: add -r to copy it with everything in it",
            from.display()
        )));
    }
    let target = match guest.stat(to)? {
        Some(m) if m.kind == EntryKind::Dir => match from.file_name() {
            Some(n) => guest_join(to, utf8(Path::new(n))?),
            None => to.to_string(),
        },
        None if to.ends_with('/') => {
            return Err(Error::failed(
                format!("{}:{to} is not a directory", guest.at),
                format!("create it first: nox exec {} -- mkdir -p {to}", guest.at),
            ))
        }
        _ => to.to_string(),
    };
    let mut entries = vec![HostEntry {
        rel: PathBuf::new(),
        path: from.to_path_buf(),
        meta: top.clone(),
    }];
    if top.is_dir() {
        host_walk(from, Path::new(""), &mut entries)?;
    }
    let guest_path = |e: &HostEntry| -> Result<String> {
        Ok(if e.rel.as_os_str().is_empty() {
            target.clone()
        } else {
            guest_join(&target, utf8(&e.rel)?)
        })
    };
    let total: u64 = entries
        .iter()
        .filter(|e| e.meta.is_file())
        .map(|e| e.meta.len())
        .sum();
    let mut copied = Copied::default();
    let mut dirs = Vec::new();
    let mut owners: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
    let mut modes: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in &entries {
        let p = guest_path(e)?;
        match host_kind(&e.meta) {
            EntryKind::Dir => dirs.push(p.clone()),
            EntryKind::Other => {
                copied.skipped.push(format!(
                    "{} (not a file, directory or link)",
                    e.path.display()
                ));
                continue;
            }
            _ => {}
        }
        owners
            .entry((e.meta.uid(), e.meta.gid()))
            .or_default()
            .push(p.clone());
        if !e.meta.file_type().is_symlink() {
            modes.entry(e.meta.mode() & 0o7777).or_default().push(p);
        }
    }
    progress.step(&format!("copying {} into {}", from.display(), guest.at));
    guest.batched("creating directories", &["mkdir", "-p"], &dirs)?;
    for e in &entries {
        let p = guest_path(e)?;
        match host_kind(&e.meta) {
            EntryKind::File => {
                let file = File::open(&e.path)
                    .map_err(|err| Error::io(format!("reading {}", e.path.display()), err))?;
                let mut counted = Counted {
                    inner: file,
                    done: 0,
                    total,
                    base: copied.bytes,
                    progress,
                };
                guest.b.write_guest_file(guest.name(), &p, &mut counted)?;
                copied.files += 1;
                copied.bytes += counted.done;
            }
            EntryKind::Symlink => {
                let link = std::fs::read_link(&e.path)
                    .map_err(|err| Error::io(format!("reading {}", e.path.display()), err))?;
                guest.must(
                    &format!("linking {p}"),
                    vec![
                        "ln".into(),
                        "-sfn".into(),
                        "--".into(),
                        utf8(&link)?.into(),
                        p,
                    ],
                )?;
            }
            EntryKind::Dir | EntryKind::Other => {}
        }
    }
    // Owners first: chown clears setuid bits, which the modes then put back.
    for ((uid, gid), paths) in &owners {
        let owner = format!("{uid}:{gid}");
        for chunk in paths.chunks(BATCH) {
            let mut a = argv(&["chown", "-h", &owner, "--"]);
            a.extend(chunk.iter().cloned());
            let (code, _, err) = guest.run(&a)?;
            if code != 0 {
                copied.warnings.push(format!(
                    "owner {owner} not kept in {}: {}",
                    guest.at,
                    first_line(&err, code)
                ));
            }
        }
    }
    for (mode, paths) in &modes {
        guest.batched("setting modes", &["chmod", &format!("{mode:o}")], paths)?;
    }
    progress.done();
    Ok(copied)
}

fn copy_out(
    guest: &Guest<'_>,
    from: &str,
    to: &Path,
    recursive: bool,
    progress: &dyn Progress,
) -> Result<Copied> {
    let Some(top) = guest.stat(from)? else {
        return Err(Error::failed(
            format!("{}:{from} does not exist", guest.at),
            format!(
                "`nox exec {} -- ls -l {from}` shows what is there",
                guest.at
            ),
        ));
    };
    if top.kind == EntryKind::Dir && !recursive {
        return Err(Error::Usage(format!(
            "{}:{from} is a directory: add -r to copy it with everything in it",
            guest.at
        )));
    }
    if !matches!(top.kind, EntryKind::File | EntryKind::Dir) {
        return Err(Error::Usage(format!(
            "{}:{from} is not a file or directory",
            guest.at
        )));
    }
    let target = if to.is_dir() {
        match base_name(from) {
            Some(n) => to.join(n),
            None => to.to_path_buf(),
        }
    } else if to.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::Usage(format!("{} is not a directory", to.display())));
    } else {
        to.to_path_buf()
    };
    let listing = if top.kind == EntryKind::Dir {
        guest.walk(from)?
    } else {
        Vec::new()
    };
    let total = top.size * u64::from(top.kind == EntryKind::File)
        + listing
            .iter()
            .filter(|(_, m, _)| m.kind == EntryKind::File)
            .map(|(_, m, _)| m.size)
            .sum::<u64>();
    progress.step(&format!("copying {}:{from} to {}", guest.at, to.display()));
    let mut copied = Copied::default();
    // What was made, deepest last, so modes go on in reverse (a read-only directory last).
    let mut made: Vec<(PathBuf, Meta)> = Vec::new();
    if top.kind == EntryKind::File {
        fetch_file(guest, from, &target, total, &mut copied, progress, false)?;
        made.push((target.clone(), top.clone()));
    } else {
        make_dir(&target)?;
        made.push((target.clone(), top.clone()));
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for (rel, meta, link) in &listing {
            let Some(relp) = safe_relative(rel) else {
                return Err(Error::failure(format!(
                    "{} listed {rel:?} under {from}: not a plain relative path, nothing more copied",
                    guest.at
                )));
            };
            // Every parent must be a directory this copy made: a symlink is never gone through.
            if let Some(parent) = relp.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !dirs.contains(parent) {
                    return Err(Error::failure(format!(
                        "{} listed {rel:?} under {from} outside a directory it listed, nothing more copied",
                        guest.at
                    )));
                }
            }
            let host = target.join(&relp);
            match meta.kind {
                EntryKind::Dir => {
                    make_dir(&host)?;
                    dirs.insert(relp);
                }
                EntryKind::File => {
                    let src = guest_join(from, rel);
                    fetch_file(guest, &src, &host, total, &mut copied, progress, true)?;
                }
                EntryKind::Symlink => {
                    if std::fs::symlink_metadata(&host).is_ok_and(|m| !m.is_dir()) {
                        std::fs::remove_file(&host)
                            .map_err(|e| Error::io(format!("replacing {}", host.display()), e))?;
                    }
                    std::os::unix::fs::symlink(link, &host)
                        .map_err(|e| Error::io(format!("creating link {}", host.display()), e))?;
                }
                EntryKind::Other => {
                    copied.skipped.push(format!(
                        "{}:{} (not a file, directory or link)",
                        guest.at,
                        guest_join(from, rel)
                    ));
                    continue;
                }
            }
            made.push((host, meta.clone()));
        }
    }
    for (path, meta) in made.iter().rev() {
        // Owners as the guest has them when the host lets us (nox as root), as `cp -a` does.
        if let Err(e) = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(Error::io(
                    format!("setting the owner of {}", path.display()),
                    e,
                ));
            }
        }
        if meta.kind != EntryKind::Symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
                .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
        }
    }
    progress.done();
    Ok(copied)
}

/// A directory for the copy: made (private until its mode is set at the end), or one that is
/// already there and really a directory, never a symlink to one.
fn make_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::failed(
            format!("{} exists and is not a directory", path.display()),
            "move it away or copy to another place",
        )),
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e)),
    }
}

fn fetch_file(
    guest: &Guest<'_>,
    from: &str,
    to: &Path,
    total: u64,
    copied: &mut Copied,
    progress: &dyn Progress,
    inside_tree: bool,
) -> Result<()> {
    let mut open = OpenOptions::new();
    open.write(true).create(true).truncate(true).mode(0o600);
    if inside_tree {
        // A name in a tree the guest described: never written through a link.
        open.custom_flags(libc::O_NOFOLLOW);
    }
    let file = open
        .open(to)
        .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let mut counted = Counted {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        done: 0,
        total,
        base: copied.bytes,
        progress,
    };
    guest.b.read_guest_file(guest.name(), from, &mut counted)?;
    counted
        .inner
        .flush()
        .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
    copied.files += 1;
    copied.bytes += counted.done;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_descriptions_parse() {
        let m = parse_meta("f 4755 0 100 12").unwrap();
        assert_eq!(
            m,
            Meta {
                kind: EntryKind::File,
                mode: 0o4755,
                uid: 0,
                gid: 100,
                size: 12
            }
        );
        assert!(parse_meta("f 4755 0 100").is_none());
        assert!(parse_meta("f 99 0 0 1").is_none());
        let l = parse_listing(b"d 755 0 0 4096\0a\0\0l 777 0 0 4\0a/l\0/etc\0").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[1].0.as_str(), l[1].2.as_str()), ("a/l", "/etc"));
        assert_eq!(l[1].1.kind, EntryKind::Symlink);
        assert!(parse_listing(b"d 755 0 0 4096\0a\0").is_none());
        assert_eq!(parse_listing(b"").unwrap(), vec![]);
    }

    #[test]
    fn only_plain_relative_names_from_a_guest_are_used() {
        assert!(safe_relative("a/b").is_some());
        for bad in ["../x", "a/../../x", "/etc", "", "./a"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn base_names_for_copies_into_directories() {
        assert_eq!(base_name("/etc/hosts"), Some("hosts"));
        assert_eq!(base_name("/etc/"), Some("etc"));
        assert_eq!(base_name("/"), None);
        assert_eq!(base_name("/a/.."), None);
    }
}
