//! The QEMU guest agent, through libvirt: how nox runs commands in a VM and knows it is up,
//! without any network path to the guest.

use std::time::Duration;

use nox_core::wait::wait_until;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use virt::domain::Domain;

/// How long one agent call may block in libvirt before it gives up, in seconds.
const CALL_TIMEOUT_SECS: i32 = 5;
/// Polling interval while waiting for the agent or a command.
const POLL: Duration = Duration::from_millis(100);
/// How often a call whose `guest-sync` went unanswered is tried, in all.
const SYNC_ATTEMPTS: usize = 5;
const SYNC_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Whether libvirt gave up on the agent at the `guest-sync` it sends ahead of each command,
/// before the command itself was sent. A command that timed out after being sent carries the
/// same error code but another message, and is not safe to send again.
fn missed_sync(e: &virt::error::Error) -> bool {
    matches!(
        e.code().known(),
        Some(virt::error::ErrorNumber::AgentUnresponsive)
    ) && e.message().contains("synchronization")
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("guest agent: {}", .0.message())]
    Libvirt(#[source] virt::error::Error),
    #[error("guest agent sent an unexpected reply: {0}")]
    Protocol(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

impl From<virt::error::Error> for AgentError {
    fn from(e: virt::error::Error) -> Self {
        AgentError::Libvirt(e)
    }
}

/// What a command run through the agent produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code, or 128 + signal for a command killed by a signal (as shells report it).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

#[derive(Debug)]
pub struct GuestAgent<'d> {
    domain: &'d Domain,
}

#[derive(Deserialize)]
struct Reply<T> {
    #[serde(rename = "return")]
    ret: T,
}

#[derive(Deserialize)]
struct ExecStarted {
    pid: i64,
}

#[derive(Deserialize)]
struct ExecStatus {
    exited: bool,
    exitcode: Option<i32>,
    signal: Option<i32>,
    #[serde(rename = "out-data")]
    out_data: Option<String>,
    #[serde(rename = "err-data")]
    err_data: Option<String>,
}

impl<'d> GuestAgent<'d> {
    pub fn new(domain: &'d Domain) -> Self {
        GuestAgent { domain }
    }

    fn call<T: for<'de> Deserialize<'de>>(&self, cmd: serde_json::Value) -> Result<T, AgentError> {
        self.call_within(cmd, CALL_TIMEOUT_SECS)
    }

    /// One agent command, which libvirt waits up to `timeout_secs` for.
    fn call_within<T: for<'de> Deserialize<'de>>(
        &self,
        cmd: serde_json::Value,
        timeout_secs: i32,
    ) -> Result<T, AgentError> {
        let started = std::time::Instant::now();
        let text = cmd.to_string();
        let mut reply = self.domain.qemu_agent_command(&text, timeout_secs, 0);
        // libvirt sends `guest-sync` before every command and gives the agent a fixed second to
        // answer it. A guest busy under software emulation misses that second now and then. The
        // command itself was never sent then, so sending it again cannot run it twice.
        for _ in 1..SYNC_ATTEMPTS {
            match &reply {
                Err(e) if missed_sync(e) => {
                    std::thread::sleep(SYNC_RETRY_PAUSE);
                    reply = self.domain.qemu_agent_command(&text, timeout_secs, 0);
                }
                _ => break,
            }
        }
        // The command's name only: its arguments carry passwords, keys, script input and the
        // content of users' files.
        tracing::debug!(
            command = %cmd["execute"].as_str().unwrap_or("?"),
            took = ?started.elapsed(),
            ok = reply.is_ok(),
            "guest agent"
        );
        let reply = reply?;
        serde_json::from_str::<Reply<T>>(&reply)
            .map(|r| r.ret)
            .map_err(|e| AgentError::Protocol(format!("{e}: {reply}")))
    }

    /// True when the agent answers a ping right now.
    pub fn ping(&self) -> bool {
        self.call::<serde_json::Value>(json!({"execute": "guest-ping"}))
            .is_ok()
    }

    /// Waits until the agent answers, polling; `tick` runs between polls (progress,
    /// interruption) and may abort the wait by returning an error.
    pub fn wait_ready<E: From<AgentError>>(
        &self,
        timeout: Duration,
        tick: &dyn Fn(Duration) -> Result<(), E>,
    ) -> Result<Duration, E> {
        let answered = wait_until(timeout, POLL, |waited| {
            if self.ping() {
                return Ok(Some(waited));
            }
            tick(waited).map(|_| None)
        })?;
        answered
            .ok_or_else(|| AgentError::Timeout(timeout, "the guest agent to answer".into()).into())
    }

    /// Starts `argv` (argv[0] an absolute path, or a name on the agent's PATH) as root in the
    /// guest and returns its pid. Arguments travel as a JSON array: no shell, no quoting.
    pub fn spawn(
        &self,
        argv: &[&str],
        stdin: Option<&[u8]>,
        capture: bool,
    ) -> Result<i64, AgentError> {
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| AgentError::Protocol("empty command".into()))?;
        let mut arguments = json!({"path": path, "arg": args, "capture-output": capture});
        if let Some(input) = stdin {
            arguments["input-data"] = json!(B64.encode(input));
        }
        let started: ExecStarted =
            self.call(json!({"execute": "guest-exec", "arguments": arguments}))?;
        Ok(started.pid)
    }

    /// The command's output once it has exited, `None` while it runs.
    pub fn exec_status(&self, pid: i64) -> Result<Option<ExecOutput>, AgentError> {
        let st: ExecStatus =
            self.call(json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}))?;
        if !st.exited {
            return Ok(None);
        }
        let decode = |d: Option<String>| -> Result<Vec<u8>, AgentError> {
            d.map(|s| {
                B64.decode(s)
                    .map_err(|e| AgentError::Protocol(e.to_string()))
            })
            .transpose()
            .map(Option::unwrap_or_default)
        };
        Ok(Some(ExecOutput {
            code: st.exitcode.or(st.signal.map(|s| 128 + s)).unwrap_or(-1),
            stdout: decode(st.out_data)?,
            stderr: decode(st.err_data)?,
        }))
    }

    /// Runs `argv` to completion and returns its output.
    pub fn run(
        &self,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, AgentError> {
        let pid = self.spawn(argv, stdin, true)?;
        wait_until(timeout, POLL, |_| self.exec_status(pid))?
            .ok_or_else(|| AgentError::Timeout(timeout, format!("`{}` to finish", argv.join(" "))))
    }

    /// Opens a guest file for reading; `None` if it does not exist (yet).
    pub fn file_open(&self, path: &str) -> Result<Option<i64>, AgentError> {
        match self.call::<i64>(
            json!({"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}}),
        ) {
            Ok(h) => Ok(Some(h)),
            Err(AgentError::Libvirt(e))
                if e.message().contains("No such file") || e.message().contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads up to `count` bytes; returns them and whether the end of the file was reached.
    pub fn file_read(&self, handle: i64, count: usize) -> Result<(Vec<u8>, bool), AgentError> {
        #[derive(Deserialize)]
        struct Read {
            #[serde(rename = "buf-b64")]
            buf: String,
            eof: bool,
        }
        let r: Read = self.call(
            json!({"execute": "guest-file-read", "arguments": {"handle": handle, "count": count}}),
        )?;
        let bytes = B64
            .decode(r.buf)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Ok((bytes, r.eof))
    }

    /// A whole small guest file, or `None` if it does not exist (yet). The handle is closed
    /// however the reading ends.
    pub fn read_small(&self, path: &str) -> Result<Option<Vec<u8>>, AgentError> {
        let Some(handle) = self.file_open(path)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        let read = loop {
            match self.file_read(handle, 64 * 1024) {
                Ok((bytes, eof)) => {
                    data.extend_from_slice(&bytes);
                    if eof || bytes.is_empty() {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.file_close(handle);
        read.map(|_| Some(data))
    }

    pub fn file_close(&self, handle: i64) {
        let _ = self.call::<serde_json::Value>(
            json!({"execute": "guest-file-close", "arguments": {"handle": handle}}),
        );
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// File calls for `nox cp`: big pieces take longer than one ordinary call may, above all
/// under emulation, so they take their own timeout.
impl GuestAgent<'_> {
    /// Opens a guest file with an fopen(3) `mode` ("r", "w"); errors say why (the guest's
    /// message: no such file, permission denied).
    pub fn file_open_mode(&self, path: &str, mode: &str) -> Result<i64, AgentError> {
        self.call_within(
            json!({"execute": "guest-file-open", "arguments": {"path": path, "mode": mode}}),
            CALL_TIMEOUT_SECS,
        )
    }

    /// Reads up to `count` bytes, waiting up to `timeout_secs`; returns them and whether the
    /// end of the file was reached.
    pub fn file_read_slow(
        &self,
        handle: i64,
        count: usize,
        timeout_secs: i32,
    ) -> Result<(Vec<u8>, bool), AgentError> {
        #[derive(Deserialize)]
        struct Read {
            #[serde(rename = "buf-b64")]
            buf: String,
            eof: bool,
        }
        let r: Read = self.call_within(
            json!({"execute": "guest-file-read", "arguments": {"handle": handle, "count": count}}),
            timeout_secs,
        )?;
        let bytes = B64
            .decode(r.buf)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        Ok((bytes, r.eof))
    }

    /// Writes all of `data`, waiting up to `timeout_secs` per call.
    pub fn file_write(
        &self,
        handle: i64,
        data: &[u8],
        timeout_secs: i32,
    ) -> Result<(), AgentError> {
        #[derive(Deserialize)]
        struct Written {
            count: usize,
        }
        let mut rest = data;
        while !rest.is_empty() {
            let w: Written = self.call_within(
                json!({"execute": "guest-file-write",
                       "arguments": {"handle": handle, "buf-b64": B64.encode(rest)}}),
                timeout_secs,
            )?;
            if w.count == 0 {
                return Err(AgentError::Protocol(
                    "guest-file-write wrote nothing".into(),
                ));
            }
            rest = &rest[w.count.min(rest.len())..];
        }
        Ok(())
    }

    /// Closes a handle, reporting a failure (a write that could not be flushed).
    pub fn file_close_checked(&self, handle: i64) -> Result<(), AgentError> {
        self.call_within::<serde_json::Value>(
            json!({"execute": "guest-file-close", "arguments": {"handle": handle}}),
            CALL_TIMEOUT_SECS,
        )
        .map(|_| ())
    }
}
