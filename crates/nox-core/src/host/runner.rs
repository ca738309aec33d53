//! Running the few external programs nox needs (qemu-img, tar, ip, ...), typed.
//!
//! Every program runs through [`Runner`], so that:
//! - argv is always a list, never a shell string;
//! - every exit status is checked (`run`, `stream_out`, `feed` fail on a non-zero exit, with
//!   the program's last stderr lines in the error);
//! - stdin, stdout and stderr are served by one `poll(2)` loop, so a program that fills its
//!   stderr pipe while nox reads stdout (or the other way round) can never stall both sides;
//! - argv is logged (`NOX_LOG=debug`);
//! - unit tests replace the host with [`crate::host::fake::FakeRunner`].

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One program invocation: program, arguments, and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    /// The package that installs the program, named in the error when it cannot start.
    pub package: Option<&'static str>,
    /// Run the program in a private mount namespace with this one mount made first.
    pub mount: Option<PrivateMount>,
    /// Kill the program once it has run this long ([`Finished::timed_out`] says so).
    pub timeout: Option<std::time::Duration>,
    /// Kill the program (as at its timeout) once its stderr holds this text: for a program
    /// that reports a fatal state but does not exit.
    pub until_stderr: Option<String>,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            package: None,
            mount: None,
            timeout: None,
            until_stderr: None,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Says which package to install when the program is missing.
    pub fn package(mut self, package: &'static str) -> Cmd {
        self.package = Some(package);
        self
    }

    /// Kills the program when it has not ended after `limit`.
    pub fn timeout(mut self, limit: std::time::Duration) -> Cmd {
        self.timeout = Some(limit);
        self
    }

    /// Kills the program once its stderr contains `text`.
    pub fn until_stderr(mut self, text: &str) -> Cmd {
        self.until_stderr = Some(text.into());
        self
    }

    pub fn in_private_mount(mut self, mount: PrivateMount) -> Cmd {
        self.mount = Some(mount);
        self
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .unwrap_or(&self.program)
            .to_string_lossy()
            .into_owned()
    }

    /// Program and arguments, as one line for logs and messages (never run as a shell line).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A mount made in a fresh, private mount namespace just before the program starts: the host
/// never sees it, and it disappears with the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateMount {
    pub source: CString,
    pub target: CString,
    pub fstype: CString,
    pub data: CString,
}

impl PrivateMount {
    /// An overlay of `lower` under `upper` at `target`. `userxattr` makes it read the
    /// whiteouts an unprivileged container's kernel wrote as `user.overlay.*` attributes.
    pub fn overlay(
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
        userxattr: bool,
    ) -> Result<PrivateMount> {
        let c = |s: String| {
            CString::new(s).map_err(|_| Error::failure("a rootfs path holds a NUL byte"))
        };
        Ok(PrivateMount {
            source: c("overlay".into())?,
            target: c(target.display().to_string())?,
            fstype: c("overlay".into())?,
            data: c(format!(
                "lowerdir={},upperdir={},workdir={}{}",
                lower.display(),
                upper.display(),
                work.display(),
                if userxattr { ",userxattr" } else { "" }
            ))?,
        })
    }
}

/// What the program reads.
pub enum Stdin<'a> {
    /// Nothing (`/dev/null`).
    Null,
    Bytes(&'a [u8]),
    /// Copied in as the program reads it (a decompressor, a file).
    Stream(&'a mut dyn Read),
}

/// Where the program's standard output goes.
pub enum Stdout<'a> {
    /// Kept in [`Finished::stdout`].
    Capture,
    /// Copied out as it arrives (a compressor, a progress parser).
    Stream(&'a mut dyn Write),
}

impl fmt::Debug for Stdin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stdin::Null => f.write_str("Null"),
            Stdin::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Stdin::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl fmt::Debug for Stdout<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stdout::Capture => f.write_str("Capture"),
            Stdout::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// How a program ended, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// Empty when stdout was streamed.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The program ran past [`Cmd::timeout`] and was killed.
    pub timed_out: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last few lines of stderr, on one line, for an error message.
    pub fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(3)..].join("; ")
    }

    /// `Ok(self)` on exit 0; otherwise an error naming the program, the exit and its stderr.
    pub fn check(self, cmd: &Cmd) -> Result<Finished> {
        if self.success() {
            return Ok(self);
        }
        let how = match (self.timed_out, self.code) {
            (true, _) => "timed out".into(),
            (false, Some(c)) => format!("exit code {c}"),
            (false, None) => "killed by a signal".into(),
        };
        let tail = self.stderr_tail();
        let sub = cmd
            .args
            .first()
            .map(|a| format!(" {}", a.to_string_lossy()))
            .unwrap_or_default();
        Err(Error::Program {
            program: format!("{}{sub}", cmd.name()),
            how,
            stderr_tail: tail,
        })
    }
}

/// Runs external programs. The real one is [`SystemRunner`]; unit tests use a fake.
pub trait Runner: Send + Sync + fmt::Debug {
    /// Runs `cmd` to its end, feeding `stdin` and passing stdout on as it arrives, while
    /// collecting stderr. A non-zero exit is *not* an error here (see [`Finished::check`]);
    /// failing to start is. Ctrl-C kills the program.
    fn execute(&self, cmd: &Cmd, stdin: Stdin<'_>, stdout: Stdout<'_>) -> Result<Finished>;

    /// Replaces this process with `cmd` (`ssh`, a console), which then owns the terminal.
    /// Returns only when that failed.
    fn replace_process(&self, cmd: &Cmd) -> Error;

    /// The first executable `name` on PATH or in the sbin directories root uses.
    fn find_program(&self, name: &str) -> Option<PathBuf>;

    /// Runs `cmd`, checks its exit status, and returns what it printed.
    fn run(&self, cmd: &Cmd) -> Result<Finished> {
        self.execute(cmd, Stdin::Null, Stdout::Capture)?.check(cmd)
    }

    /// Runs `cmd` with `input` on its stdin; checks its exit status.
    fn run_with_input(&self, cmd: &Cmd, input: &[u8]) -> Result<Finished> {
        self.execute(cmd, Stdin::Bytes(input), Stdout::Capture)?
            .check(cmd)
    }

    /// Runs `cmd`, copying its stdout into `sink` as it comes; checks its exit status.
    fn stream_out(&self, cmd: &Cmd, sink: &mut dyn Write) -> Result<Finished> {
        self.execute(cmd, Stdin::Null, Stdout::Stream(sink))?
            .check(cmd)
    }

    /// Runs `cmd`, copying `source` into its stdin; checks its exit status.
    fn feed(&self, cmd: &Cmd, source: &mut dyn Read) -> Result<Finished> {
        self.execute(cmd, Stdin::Stream(source), Stdout::Capture)?
            .check(cmd)
    }
}

/// The real runner: fork and exec on this host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

/// stderr kept per program: enough for any error message, bounded for a chatty program.
const STDERR_LIMIT: usize = 1 << 20;

impl Runner for SystemRunner {
    fn execute(&self, cmd: &Cmd, stdin: Stdin<'_>, stdout: Stdout<'_>) -> Result<Finished> {
        tracing::debug!(argv = %cmd.display(), "running");
        let started = std::time::Instant::now();
        let mut child = spawn(cmd, !matches!(stdin, Stdin::Null))?;
        let result = pump(&mut child, stdin, stdout, cmd);
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", cmd.name()), e))?;
        let (out, err, timed_out) = result?;
        let finished = Finished {
            code: status.code(),
            stdout: out,
            stderr: err,
            timed_out,
        };
        if finished.success() {
            tracing::debug!(program = %cmd.name(), took = ?started.elapsed(), "finished");
        } else {
            tracing::info!(argv = %cmd.display(), code = ?finished.code, took = ?started.elapsed(), stderr = %finished.stderr_tail(), "program failed");
        }
        crate::interrupt::check()?;
        Ok(finished)
    }

    fn replace_process(&self, cmd: &Cmd) -> Error {
        use std::os::unix::process::CommandExt;
        tracing::debug!(argv = %cmd.display(), "handing over");
        let mut c = std::process::Command::new(&cmd.program);
        c.args(&cmd.args);
        if let Some(d) = &cmd.cwd {
            c.current_dir(d);
        }
        let err = c.exec();
        not_started(cmd, err)
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }
}

fn not_started(cmd: &Cmd, e: std::io::Error) -> Error {
    match cmd.package {
        Some(p) => Error::failed(
            format!("cannot run {}: {e}", cmd.name()),
            format!("install {p}"),
        ),
        None => Error::io(format!("cannot run {}", cmd.name()), e),
    }
}

fn spawn(cmd: &Cmd, with_stdin: bool) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args)
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = &cmd.cwd {
        c.current_dir(d);
    }
    let mount = cmd.mount.clone();
    let parent = nix::unistd::getpid();
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes only system calls (prctl, getppid,
    // unshare, mount) on C strings made before the fork: no allocation, no locks.
    unsafe {
        c.pre_exec(move || {
            die_with_parent(parent)?;
            match &mount {
                Some(m) => private_mount(m).map_err(std::io::Error::from),
                None => Ok(()),
            }
        });
    }
    c.spawn().map_err(|e| not_started(cmd, e))
}

/// In the child, before exec: dies when nox does. A nox killed with SIGKILL must not leave a
/// tar or qemu-img writing into files the next command is about to clean up.
fn die_with_parent(parent: nix::unistd::Pid) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // nox may have died between fork and prctl: then no signal would ever come.
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::other(
            "nox exited before the program started",
        ));
    }
    Ok(())
}

/// In the child, before exec: a private mount namespace, then the mount.
fn private_mount(m: &PrivateMount) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    // Nothing mounted from here on may propagate back to the host's namespace.
    mount(
        None::<&std::ffi::CStr>,
        c"/",
        None::<&std::ffi::CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&std::ffi::CStr>,
    )?;
    mount(
        Some(m.source.as_c_str()),
        m.target.as_c_str(),
        Some(m.fstype.as_c_str()),
        MsFlags::empty(),
        Some(m.data.as_c_str()),
    )
}

/// Serves the child's three pipes from one poll loop until stdout and stderr close; kills it
/// at `timeout`. Returns stdout (when captured), stderr, and whether it timed out.
fn pump(
    child: &mut std::process::Child,
    mut stdin: Stdin<'_>,
    mut stdout: Stdout<'_>,
    cmd: &Cmd,
) -> Result<(Vec<u8>, Vec<u8>, bool)> {
    let timeout = cmd.timeout;
    let started = std::time::Instant::now();
    let mut timed_out = false;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;

    let io = |e: std::io::Error| Error::io("talking to a program", e);
    let mut input = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    for fd in [
        input.as_ref().map(|f| f.as_fd()),
        out.as_ref().map(|f| f.as_fd()),
        err.as_ref().map(|f| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd).map_err(io)?;
    }
    let (mut captured, mut errors) = (Vec::new(), Vec::new());
    // Input read from the source but not yet taken by the program.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_at = 0;
    let mut source_done = false;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        crate::interrupt::check()?;
        let said_enough = cmd
            .until_stderr
            .as_ref()
            .is_some_and(|needle| contains(&errors, needle.as_bytes()));
        if !timed_out && (said_enough || timeout.is_some_and(|t| started.elapsed() >= t)) {
            // Its pipes close when it dies; the loop then ends as for any exit.
            let _ = child.kill();
            timed_out = true;
        }
        // A killed program's own children may keep its pipes open: do not wait for them.
        if timed_out && matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        // Refill what goes in next, closing stdin once everything is in.
        if input.is_some() && pending_at == pending.len() {
            pending.clear();
            pending_at = 0;
            match &mut stdin {
                Stdin::Bytes(b) if !source_done => {
                    pending.extend_from_slice(b);
                    source_done = true;
                }
                Stdin::Stream(r) if !source_done => {
                    let n = loop {
                        match r.read(&mut buf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(Error::io("reading the input for a program", e)),
                        }
                    };
                    if n == 0 {
                        source_done = true;
                    } else {
                        pending.extend_from_slice(&buf[..n]);
                    }
                }
                _ => {}
            }
            if source_done && pending.is_empty() {
                input = None;
            }
        }
        if out.is_none() && err.is_none() {
            break;
        }
        let mut fds = Vec::with_capacity(3);
        let mut slots = [None; 3];
        for (i, (fd, flags)) in [
            (input.as_ref().map(|f| f.as_fd()), PollFlags::POLLOUT),
            (out.as_ref().map(|f| f.as_fd()), PollFlags::POLLIN),
            (err.as_ref().map(|f| f.as_fd()), PollFlags::POLLIN),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(fd) = fd {
                slots[i] = Some(fds.len());
                fds.push(PollFd::new(fd, flags));
            }
        }
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io(e.into())),
        }
        let ready = |i: usize| {
            slots[i]
                .and_then(|s| fds[s].revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (ready_in, ready_out, ready_err) = (ready(0), ready(1), ready(2));
        drop(fds);
        if ready_in {
            if let Some(w) = input.as_mut() {
                match w.write(&pending[pending_at..]) {
                    Ok(n) => pending_at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // The program stopped reading (and will say why on stderr, or exit).
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        input = None;
                        source_done = true;
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        }
        if ready_out {
            if let Some(r) = out.as_mut() {
                match r.read(&mut buf) {
                    Ok(0) => out = None,
                    Ok(n) => match &mut stdout {
                        Stdout::Capture => captured.extend_from_slice(&buf[..n]),
                        Stdout::Stream(w) => w.write_all(&buf[..n]).map_err(io)?,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
        if ready_err {
            if let Some(r) = err.as_mut() {
                match r.read(&mut buf) {
                    Ok(0) => err = None,
                    Ok(n) => {
                        if errors.len() < STDERR_LIMIT {
                            errors.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
    }
    if let Stdout::Stream(w) = &mut stdout {
        w.flush().map_err(io)?;
    }
    Ok((captured, errors, timed_out))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Cmd {
        Cmd::new("/bin/sh").args(["-c", script])
    }

    #[test]
    fn output_and_exit_status_are_checked() {
        let r = SystemRunner;
        let ok = r.run(&sh("printf hello; printf oops >&2")).unwrap();
        assert_eq!(ok.stdout, b"hello");
        assert_eq!(ok.stderr, b"oops");
        let e = r
            .run(&sh("echo first >&2; echo 'the reason' >&2; exit 3"))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(msg.contains("the reason"), "{msg}");
        let e = r.run(&Cmd::new("/nonexistent/qemu-img").package("qemu-utils"));
        assert!(e.unwrap_err().hint().unwrap().contains("qemu-utils"));
    }

    /// A program that writes a lot to stderr before stdout would stall a reader that drains
    /// stdout first; one that reads all its input before writing would stall a writer that
    /// does not read. Both finish here.
    #[test]
    fn full_pipes_never_stall() {
        let r = SystemRunner;
        let f = r
            .run(&sh(
                "head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2",
            ))
            .unwrap();
        assert_eq!(f.stdout.len(), 300_000);
        assert!(f.stderr.len() >= 600_000);
        let input = vec![7u8; 1 << 20];
        let f = r
            .run_with_input(&sh("head -c 200000 /dev/zero >&2; wc -c"), &input)
            .unwrap();
        assert_eq!(f.stdout_text().trim(), (1 << 20).to_string());
        let mut source = std::io::Cursor::new(input.clone());
        let mut sink = Vec::new();
        let f = r
            .execute(
                &Cmd::new("cat"),
                Stdin::Stream(&mut source),
                Stdout::Stream(&mut sink),
            )
            .unwrap();
        assert!(f.success());
        assert_eq!(sink, input);
    }

    #[test]
    fn a_program_that_stops_reading_is_not_an_error_of_ours() {
        let input = vec![1u8; 4 << 20];
        let f = SystemRunner
            .execute(
                &sh("head -c 10 >/dev/null; exit 4"),
                Stdin::Bytes(&input),
                Stdout::Capture,
            )
            .unwrap();
        assert_eq!(f.code, Some(4));
    }

    #[test]
    fn a_program_past_its_timeout_is_killed() {
        let t = std::time::Instant::now();
        let cmd = sh("echo started; exec sleep 30").timeout(std::time::Duration::from_millis(300));
        let f = SystemRunner
            .execute(&cmd, Stdin::Null, Stdout::Capture)
            .unwrap();
        assert!(f.timed_out);
        assert!(!f.success());
        assert_eq!(f.stdout_text(), "started\n");
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        assert!(f.check(&cmd).unwrap_err().to_string().contains("timed out"));
    }

    #[test]
    fn a_program_that_reports_a_fatal_state_is_stopped_there() {
        let t = std::time::Instant::now();
        let cmd = sh("echo 'KVM internal error' >&2; exec sleep 30").until_stderr("internal error");
        let f = SystemRunner
            .execute(&cmd, Stdin::Null, Stdout::Capture)
            .unwrap();
        assert!(f.timed_out && !f.success());
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn argv_is_never_a_shell_line() {
        let f = SystemRunner
            .run(&Cmd::new("printf").args(["%s|", "a b", "$HOME", "'q'"]))
            .unwrap();
        assert_eq!(f.stdout_text(), "a b|$HOME|'q'|");
    }
}
