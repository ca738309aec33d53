//! The QEMU guest agent, through libvirt: how nox runs commands in a VM and knows it is up,
//! without any network path to the guest.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use virt::domain::Domain;

/// How long one agent call may block in libvirt before it gives up, in seconds.
const CALL_TIMEOUT_SECS: i32 = 5;
/// Polling interval while waiting for the agent or a command.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("guest agent: {0}")]
    Libvirt(String),
    #[error("guest agent sent an unexpected reply: {0}")]
    Protocol(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

impl From<virt::error::Error> for AgentError {
    fn from(e: virt::error::Error) -> Self {
        AgentError::Libvirt(e.message().to_string())
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
        let reply = self
            .domain
            .qemu_agent_command(&cmd.to_string(), CALL_TIMEOUT_SECS, 0)?;
        serde_json::from_str::<Reply<T>>(&reply)
            .map(|r| r.ret)
            .map_err(|e| AgentError::Protocol(format!("{e}: {reply}")))
    }

    /// True when the agent answers a ping right now.
    pub fn ping(&self) -> bool {
        self.call::<serde_json::Value>(json!({"execute": "guest-ping"}))
            .is_ok()
    }

    /// Waits until the agent answers, polling; returns how long that took.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration, AgentError> {
        let start = Instant::now();
        loop {
            if self.ping() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(AgentError::Timeout(
                    timeout,
                    "the guest agent to answer".into(),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs `argv` (argv[0] an absolute path) in the guest as root and returns its output.
    /// Arguments travel as a JSON array: no shell, no quoting.
    pub fn run(
        &self,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, AgentError> {
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| AgentError::Protocol("empty command".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut arguments = json!({"path": path, "arg": args, "capture-output": true});
        if let Some(input) = stdin {
            arguments["input-data"] = json!(b64.encode(input));
        }
        let started: ExecStarted =
            self.call(json!({"execute": "guest-exec", "arguments": arguments}))?;
        let start = Instant::now();
        loop {
            let st: ExecStatus = self
                .call(json!({"execute": "guest-exec-status", "arguments": {"pid": started.pid}}))?;
            if st.exited {
                let decode = |d: Option<String>| -> Result<Vec<u8>, AgentError> {
                    d.map(|s| {
                        b64.decode(s)
                            .map_err(|e| AgentError::Protocol(e.to_string()))
                    })
                    .transpose()
                    .map(Option::unwrap_or_default)
                };
                return Ok(ExecOutput {
                    code: st.exitcode.or(st.signal.map(|s| 128 + s)).unwrap_or(-1),
                    stdout: decode(st.out_data)?,
                    stderr: decode(st.err_data)?,
                });
            }
            if start.elapsed() > timeout {
                return Err(AgentError::Timeout(
                    timeout,
                    format!("`{}` to finish", argv.join(" ")),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}
