//! `nox cp` for containers: file content streams through programs attached inside the
//! container (`cat` out, `tee` in), so every path is resolved in the container's own mount
//! namespace and root. A symlink the container made (`/tmp/evil -> /etc`) leads to the
//! container's `/etc`, never the host's: nox never opens a host path the container controls.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nox_core::{Error, InstanceName};

use crate::list::find;
use crate::LxcBackend;

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    // Close-on-exec: the attached program gets them only as its 0, 1 and 2.
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("creating a pipe", e.into()))
}

fn dev_null(write: bool) -> Result<File, Error> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(|e| Error::io("opening /dev/null", e))
}

/// The attached program's stderr, a few lines at most, for the error message.
fn collect(fd: OwnedFd) -> String {
    let mut text = String::new();
    let _ = File::from(fd).take(4096).read_to_string(&mut text);
    text.trim().to_string()
}

fn failed(name: &InstanceName, what: &str, code: i32, stderr: &str) -> Error {
    let why = if stderr.is_empty() {
        format!("exit code {code}")
    } else {
        stderr.lines().next().unwrap_or_default().to_string()
    };
    Error::failed(
        format!("{what} in {name} failed: {why}"),
        format!("check the path with `nox exec {name} -- ls -ld PATH`"),
    )
}

/// Runs `argv` attached in the container with the given standard fds, on its own thread so
/// the caller's thread can stream through a pipe meanwhile; returns the exit code and the
/// start of its stderr. The fds are closed when the command is over, which ends the stream.
fn attach(
    b: &LxcBackend,
    name: &InstanceName,
    argv: &[&str],
    fds: [OwnedFd; 2],
    stderr: OwnedFd,
    err_r: OwnedFd,
) -> Result<(i32, String), Error> {
    std::thread::scope(|s| {
        let errors = s.spawn(move || collect(err_r));
        let code = find(b, name).and_then(|(c, _)| {
            let [input, output] = &fds;
            c.attach_with_fds(
                argv,
                input.as_raw_fd(),
                output.as_raw_fd(),
                stderr.as_raw_fd(),
            )
            .map_err(Error::from)
        });
        drop((fds, stderr));
        let text = errors.join().expect("the stderr reader does not panic");
        Ok((code?, text))
    })
}

fn running(b: &LxcBackend, name: &InstanceName) -> Result<(), Error> {
    let (c, _) = find(b, name)?;
    if !c.is_running() {
        return Err(Error::not_running(name.as_str()));
    }
    Ok(())
}

pub fn read(
    b: &LxcBackend,
    name: &InstanceName,
    path: &str,
    sink: &mut dyn Write,
) -> Result<(), Error> {
    running(b, name)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let null = OwnedFd::from(dev_null(false)?);
    std::thread::scope(|s| {
        let attached =
            s.spawn(move || attach(b, name, &["cat", "--", path], [null, out_w], err_w, err_r));
        // If the sink fails, this end closes and `cat` dies of SIGPIPE instead of blocking.
        let copied = std::io::copy(&mut File::from(out_r), sink);
        let (code, stderr) = attached.join().expect("the copier does not panic")?;
        if code != 0 {
            return Err(failed(name, &format!("reading {path}"), code, &stderr));
        }
        copied
            .map(|_| ())
            .map_err(|e| Error::io(format!("copying {path} out of {name}"), e))
    })
}

pub fn write(
    b: &LxcBackend,
    name: &InstanceName,
    path: &str,
    source: &mut dyn Read,
) -> Result<(), Error> {
    running(b, name)?;
    let (in_r, in_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let null = OwnedFd::from(dev_null(true)?);
    std::thread::scope(|s| {
        // `tee` writes what it reads to the file (and to /dev/null): no shell needed for the
        // redirection, and the path travels as one argument.
        let attached =
            s.spawn(move || attach(b, name, &["tee", "--", path], [in_r, null], err_w, err_r));
        // When `tee` fails early its end closes, and this gets EPIPE instead of blocking.
        let fed = std::io::copy(source, &mut File::from(in_w));
        let (code, stderr) = attached.join().expect("the feeder does not panic")?;
        if code != 0 {
            return Err(failed(name, &format!("writing {path}"), code, &stderr));
        }
        fed.map(|_| ())
            .map_err(|e| Error::io(format!("copying into {path} in {name}"), e))
    })
}
