//! `exec` through the guest agent, with output streamed as it is produced.
//!
//! The agent's own exec returns output only at the end, so the command writes into two files in
//! the guest's /run (created 0600 by root) that we read while it runs. The wrapper script is a
//! constant; the user's argv reaches `exec "$@"` as positional parameters, never as text in a
//! shell string, so quotes, `$`, `;` and newlines arrive byte for byte.

use std::io::Write;
use std::time::Duration;

use nox_core::backend::ExecIo;
use nox_core::{Error, InstanceName};

use crate::agent::GuestAgent;
use crate::list::find;
use crate::LibvirtBackend;

/// umask 077: the output files in /run are for nox alone, not the guest's other users.
const WRAPPER: &str = r#"umask 077; o=$1; e=$2; shift 2; exec "$@" >"$o" 2>"$e""#;
const POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 1 << 16;

pub fn exec(b: &LibvirtBackend, name: &InstanceName, argv: &[String]) -> Result<i32, Error> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    exec_with(
        b,
        name,
        argv,
        ExecIo {
            stdin: &[],
            stdout: &mut out,
            stderr: &mut err,
        },
    )
}

/// `exec` with the command's input given and its output sent where the caller says. The agent
/// hands `io.stdin` to the command whole (guest-exec's input-data).
pub fn exec_with(
    b: &LibvirtBackend,
    name: &InstanceName,
    argv: &[String],
    io: ExecIo<'_>,
) -> Result<i32, Error> {
    let conn = b.conn()?;
    let (dom, _) = find(&conn, name)?;
    if !dom.is_active().unwrap_or(false) {
        return Err(Error::not_running(name.as_str()));
    }
    let agent = GuestAgent::new(&dom);
    if !agent.ping() {
        return Err(Error::failed(
            format!("the guest agent in {name} does not answer"),
            format!("the guest may still be booting: `nox start --wait {name}`, or check `nox console {name}`"),
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (out_path, err_path) = (
        format!("/run/nox-exec-{id}.out"),
        format!("/run/nox-exec-{id}.err"),
    );
    let mut cmd: Vec<&str> = vec!["/bin/sh", "-c", WRAPPER, "nox-exec", &out_path, &err_path];
    cmd.extend(argv.iter().map(String::as_str));
    let stdin = (!io.stdin.is_empty()).then_some(io.stdin);
    let pid = agent.spawn(&cmd, stdin, false)?;

    let mut streams = [
        Stream::new(&out_path, io.stdout),
        Stream::new(&err_path, io.stderr),
    ];
    let code = loop {
        let exited = agent.exec_status(pid)?;
        let mut progressed = false;
        for s in &mut streams {
            progressed |= s.pump(&agent, exited.is_some())?;
        }
        if let Some(out) = exited {
            break out.code;
        }
        if !progressed {
            std::thread::sleep(POLL);
        }
    };
    for s in &streams {
        if let Some(h) = s.handle {
            agent.file_close(h);
        }
    }
    let _ = agent.spawn(&["/bin/rm", "-f", &out_path, &err_path], None, false);
    Ok(code)
}

struct Stream<'p, 's> {
    path: &'p str,
    handle: Option<i64>,
    sink: &'s mut (dyn Write + Send),
}

impl<'p, 's> Stream<'p, 's> {
    fn new(path: &'p str, sink: &'s mut (dyn Write + Send)) -> Self {
        Stream {
            path,
            handle: None,
            sink,
        }
    }

    /// Copies what is new; when `drain`, reads to the end. Returns whether bytes arrived.
    fn pump(&mut self, agent: &GuestAgent<'_>, drain: bool) -> Result<bool, Error> {
        if self.handle.is_none() {
            self.handle = agent.file_open(self.path)?;
        }
        let Some(h) = self.handle else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            let (bytes, eof) = agent.file_read(h, CHUNK)?;
            if !bytes.is_empty() {
                any = true;
                self.sink
                    .write_all(&bytes)
                    .and_then(|_| self.sink.flush())
                    .map_err(|e| Error::io("writing command output", e))?;
            }
            if bytes.is_empty() || (eof && !drain) {
                return Ok(any);
            }
            if eof {
                return Ok(any);
            }
        }
    }
}
