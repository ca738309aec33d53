//! `exec_with` for containers: attach with pipes, so the caller gets the command's output as it
//! comes (to tee into a log, or to parse) and can give it input (a script, a secret).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nox_core::backend::ExecIo;
use nox_core::{Error, InstanceName};

use crate::list::find;
use crate::LxcBackend;

/// After the command exits, how long output may still trickle in from what it left behind.
/// A daemon it started in the background keeps the pipe open; nox does not wait for that.
const LINGER: Duration = Duration::from_millis(300);

pub fn exec_with(
    b: &LxcBackend,
    name: &InstanceName,
    argv: &[String],
    io: ExecIo<'_>,
) -> Result<i32, Error> {
    let (c, _) = find(b, name)?;
    if !c.is_running() {
        return Err(Error::not_running(name.as_str()));
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    // Close-on-exec: the command gets them only as its 0, 1 and 2, never as stray copies
    // that would keep a pipe open.
    let pipe =
        || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("creating a pipe", e.into()));
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let exited = AtomicBool::new(false);
    let ExecIo {
        stdin,
        stdout,
        stderr,
    } = io;
    std::thread::scope(|s| {
        s.spawn(move || {
            // EPIPE when the command exits without reading it all: nothing to do about that.
            let _ = File::from(in_w).write_all(stdin);
        });
        let pump = s.spawn(|| pump([out_r, err_r], [stdout, stderr], &exited));
        let code = c.attach_with_fds(
            &argv,
            in_r.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        );
        // Our copies: once they are gone, only the command's leftovers can hold the pipes.
        drop((in_r, out_w, err_w));
        exited.store(true, Ordering::SeqCst);
        let pumped = pump.join().expect("the output pump does not panic");
        let code = code.map_err(Error::from)?;
        pumped.map_err(|e| Error::io("copying the command's output", e))?;
        Ok(code)
    })
}

/// Copies both pipes to their sinks until they close, or until `LINGER` after the command
/// has exited.
fn pump(
    fds: [OwnedFd; 2],
    sinks: [&mut (dyn Write + Send); 2],
    exited: &AtomicBool,
) -> std::io::Result<()> {
    let mut files: [Option<File>; 2] = fds.map(|fd| Some(File::from(fd)));
    let [a, b] = sinks;
    let sinks = [a, b];
    let mut buf = vec![0u8; 1 << 16];
    let mut exited_at: Option<Instant> = None;
    while files.iter().any(Option::is_some) {
        if exited_at.is_none() && exited.load(Ordering::SeqCst) {
            exited_at = Some(Instant::now());
        }
        if exited_at.is_some_and(|t| t.elapsed() > LINGER) {
            break;
        }
        let open: Vec<usize> = (0..2).filter(|&i| files[i].is_some()).collect();
        // The open files in index order, as `open` lists them.
        let mut polls: Vec<PollFd<'_>> = files
            .iter()
            .flatten()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        let n = nix::poll::poll(&mut polls, PollTimeout::from(50u16)).or_else(|e| {
            if e == nix::errno::Errno::EINTR {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        if n == 0 {
            continue;
        }
        let ready: Vec<bool> = polls
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        for (k, &i) in open.iter().enumerate() {
            let Some(file) = files[i].as_mut().filter(|_| ready[k]) else {
                continue;
            };
            let got = file.read(&mut buf)?;
            if got == 0 {
                files[i] = None;
            } else {
                sinks[i].write_all(&buf[..got])?;
                sinks[i].flush()?;
            }
        }
    }
    Ok(())
}
