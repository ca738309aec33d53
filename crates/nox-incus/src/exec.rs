//! Running commands in an instance (`POST /1.0/instances/NAME/exec`), two ways:
//!
//! - [`Client::exec`]: non-interactive websockets. stdin is sent in, stdout and stderr stream
//!   out separately as they come, a control socket stays open for the command's lifetime (if
//!   this client goes away, Incus kills the command), and the exit code is the operation's
//!   `return`.
//! - [`Client::exec_recorded`]: `record-output`, for short commands whose output is wanted
//!   whole: no stdin, both outputs read from the logs Incus keeps, which are then deleted.
//!
//! argv goes to Incus as a JSON list and on to execve: no shell, so every byte of every
//! argument arrives as sent.

use std::collections::BTreeMap;
use std::io::{Read, Write};

/// How often an exec whose websockets missed Incus's 5 s window is started, in all.
const EXEC_STARTS: usize = 6;

use futures_util::{SinkExt, StreamExt};
use http::Method;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::api::{InstanceExecPost, Operation};
use crate::client::{enc, operation_id, operation_of, Client};
use crate::error::{Error, Result};
use crate::instances::instance_path;
use crate::transport::Envelope;
use crate::transport::{Call, Stream};

/// What to run, as whom, where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecCommand {
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    /// Empty: the user's home (root's, /root).
    pub cwd: String,
}

impl ExecCommand {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// The request body: websockets (`record == false`) or recorded output.
    pub fn request(&self, record: bool) -> InstanceExecPost {
        InstanceExecPost {
            command: self.argv.clone(),
            wait_for_websocket: !record,
            interactive: false,
            environment: self.environment.clone(),
            width: 0,
            height: 0,
            record_output: record,
            user: self.uid,
            group: self.gid,
            cwd: self.cwd.clone(),
        }
    }
}

/// The command's standard input.
pub enum Stdin {
    /// Nothing: the command reads EOF at once.
    Null,
    /// These bytes, then EOF.
    Bytes(Vec<u8>),
    /// Whatever this reader gives until EOF (read on a thread of its own, so a reader that
    /// blocks, like a terminal, never stalls the output).
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stdin::Null => f.write_str("Stdin::Null"),
            Stdin::Bytes(b) => write!(f, "Stdin::Bytes({} bytes)", b.len()),
            Stdin::Reader(_) => f.write_str("Stdin::Reader(..)"),
        }
    }
}

/// A finished recorded exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

type Ws = WebSocketStream<Stream>;

impl Client {
    /// Runs a command, streaming: returns its exit code once it has ended and both outputs
    /// are written out.
    pub fn exec(
        &self,
        instance: &str,
        cmd: &ExecCommand,
        stdin: Stdin,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<i32> {
        let path = self.scoped(&format!("{}/exec", instance_path(instance)));
        self.block_on(async {
            let (id, control, s0, s1, s2) = self.exec_connected(&path, cmd).await?;
            let outputs =
                async { tokio::try_join!(pump_out(s1, stdout), pump_out(s2, stderr)).map(drop) };
            let input = pump_in(s0, stdin);
            tokio::pin!(outputs, input);
            let mut input_done = false;
            loop {
                tokio::select! {
                    r = &mut outputs => { r?; break; }
                    // stdin errors are not the command's: a command that exits without
                    // reading its input closes the pipe under us.
                    _ = &mut input, if !input_done => { input_done = true; }
                }
            }
            // The control socket stays open until the operation ends: closing it earlier
            // tells Incus to kill the command.
            let done = self.wait_operation_async(&id).await;
            drop(control);
            exit_code(&done?)
        })
    }

    /// Starts an exec operation and connects its four websockets. Incus starts the command
    /// once the three data sockets are connected, and gives up after 5 s: on a loaded cluster
    /// (a member proxying to another) the connects can miss that window, and the operation
    /// fails ("Only running operations can be connected") without the command having run.
    /// Such an exec is started again, up to EXEC_STARTS times in all (CI's two CPUs, busy with
    /// emulated VMs, once missed the window three times running); any other failure is
    /// returned.
    async fn exec_connected(
        &self,
        path: &str,
        cmd: &ExecCommand,
    ) -> Result<(String, Ws, Ws, Ws, Ws)> {
        let mut attempt = 0;
        loop {
            let env = self
                .call_async(Call::new(Method::POST, path.to_string()).json(&cmd.request(false)))
                .await?;
            let id = operation_id(&env)?;
            match self.connect_exec(&env, &id).await {
                Ok((c, s0, s1, s2)) => return Ok((id, c, s0, s1, s2)),
                Err(e) if attempt + 1 < EXEC_STARTS => {
                    // Never ran if the operation ended in failure: safe to start again.
                    if self.wait_operation_async(&id).await.is_ok() {
                        return Err(e);
                    }
                    tracing::info!(operation = %id, error = %e, "exec websockets missed Incus's window; starting it again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_exec(&self, env: &Envelope, id: &str) -> Result<(Ws, Ws, Ws, Ws)> {
        let op = operation_of(env)?;
        let secret = |fd: &str| -> Result<String> {
            op.metadata
                .get("fds")
                .and_then(|fds| fds.get(fd))
                .and_then(|s| s.as_str())
                .map(String::from)
                .ok_or_else(|| Error::protocol("an exec operation", format!("no websocket `{fd}`")))
        };
        let (sc, s0, s1, s2) = (secret("control")?, secret("0")?, secret("1")?, secret("2")?);
        // Control first, and alone. In non-interactive mode Incus starts the command as soon
        // as stdin, stdout and stderr are connected: control is not among the required
        // sockets (older clients never opened it). Connected beside the others, a control
        // socket that came last through a proxying member found a short command already
        // finished, and was refused with "Only running operations can be connected" after the
        // command had run. Connected first, it is always in place before the command starts.
        let control = self.websocket(id, &sc).await?;
        let (s0, s1, s2) = tokio::try_join!(
            self.websocket(id, &s0),
            self.websocket(id, &s1),
            self.websocket(id, &s2),
        )?;
        Ok((control, s0, s1, s2))
    }

    /// Runs a command with no stdin and returns its exit code and whole output, which Incus
    /// records to log files (deleted here once read).
    pub fn exec_recorded(&self, instance: &str, cmd: &ExecCommand) -> Result<ExecOutput> {
        let path = self.scoped(&format!("{}/exec", instance_path(instance)));
        let op = self
            .call_and_wait(Call::new(Method::POST, path).json(&cmd.request(true)))?
            .ok_or_else(|| Error::protocol("exec", "a synchronous answer"))?;
        let exit_code = exit_code(&op)?;
        let mut out = ExecOutput {
            exit_code,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        let logs = op.metadata.get("output").cloned().unwrap_or_default();
        for (fd, buf) in [("1", &mut out.stdout), ("2", &mut out.stderr)] {
            let Some(log) = logs.get(fd).and_then(|v| v.as_str()) else {
                continue;
            };
            // The log's API path; only its file name is taken from the server.
            let file = log.rsplit('/').next().unwrap_or_default();
            let url = self.scoped(&format!(
                "{}/logs/exec-output/{}",
                instance_path(instance),
                enc(file)
            ));
            let timeout = self.options.request_timeout;
            *buf = self.block_on(async {
                let resp = self
                    .http
                    .raw(Call::new(Method::GET, url.clone()), timeout)
                    .await?;
                let (_, body) = self.http.read_body(resp, timeout).await?;
                Ok::<_, Error>(body.to_vec())
            })?;
            self.call(Call::new(Method::DELETE, url))?;
        }
        Ok(out)
    }

    /// Connects one of an operation's websockets. When the client talks to a member other
    /// than the instance's, that member looks the operation up in the cluster database and
    /// proxies: seen failing once with a 500 under load. A refused connect registered nothing,
    /// so it is retried briefly (Incus waits 5 s for all the websockets).
    async fn websocket(&self, operation: &str, secret: &str) -> Result<Ws> {
        let mut attempt = 0;
        loop {
            match self.websocket_once(operation, secret).await {
                Err(Error::Api { status, .. })
                    if (status >= 500 || status == 404) && attempt < 3 =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn websocket_once(&self, operation: &str, secret: &str) -> Result<Ws> {
        let stream = self.http.connector.connect().await?;
        let host = match &self.endpoint {
            crate::Endpoint::Unix(_) => "incus.socket".to_string(),
            e => e.authority(),
        };
        let url = format!(
            "ws://{host}/1.0/operations/{}/websocket?secret={}",
            enc(operation),
            enc(secret)
        );
        let handshake = tokio_tungstenite::client_async(url, stream);
        let (ws, _) = tokio::time::timeout(self.options.request_timeout, handshake)
            .await
            .map_err(|_| Error::Timeout {
                endpoint: self.http.label().to_string(),
                what: "opening an exec websocket",
                after: self.options.request_timeout,
            })?
            .map_err(|e| match e {
                // Incus's refusal, with its message.
                tungstenite::Error::Http(resp) => {
                    let body = resp.body().as_deref().unwrap_or_default();
                    let status = resp.status();
                    crate::transport::parse_envelope(
                        status,
                        body,
                        "GET",
                        "/1.0/operations/{id}/websocket",
                    )
                    .err()
                    .unwrap_or_else(|| Error::WebSocket(format!("connecting: HTTP {status}")))
                }
                e => Error::WebSocket(format!("connecting: {e}")),
            })?;
        Ok(ws)
    }
}

/// The exit code in a finished exec operation's metadata.
fn exit_code(op: &Operation) -> Result<i32> {
    op.metadata
        .get("return")
        .and_then(|v| v.as_i64())
        .map(|c| c as i32)
        .ok_or_else(|| Error::protocol("an exec operation", "no exit code (`return`)"))
}

/// Copies one output websocket to `sink` until Incus's end-of-stream (an empty text message)
/// or the close.
async fn pump_out(mut ws: Ws, sink: &mut dyn Write) -> Result<()> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(data)) => sink
                .write_all(&data)
                .map_err(|e| Error::io("writing the command's output", e))?,
            Ok(Message::Text(_)) | Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            ) => break,
            Err(e) => return Err(Error::WebSocket(format!("reading output: {e}"))),
        }
    }
    sink.flush()
        .map_err(|e| Error::io("writing the command's output", e))
}

/// Sends stdin, then Incus's end-of-stream (an empty text message): the command reads EOF.
async fn pump_in(mut ws: Ws, stdin: Stdin) -> Result<()> {
    const CHUNK: usize = 128 * 1024;
    let send_err = |e: tungstenite::Error| Error::WebSocket(format!("sending stdin: {e}"));
    match stdin {
        Stdin::Null => {}
        Stdin::Bytes(bytes) => {
            for chunk in bytes.chunks(CHUNK) {
                ws.send(Message::binary(chunk.to_vec()))
                    .await
                    .map_err(send_err)?;
            }
        }
        Stdin::Reader(mut reader) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let chunk = match reader.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => Ok(buf[..n].to_vec()),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = chunk.is_err();
                    if tx.blocking_send(chunk).is_err() || failed {
                        return;
                    }
                }
            });
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk.map_err(|e| Error::io("reading stdin", e))?;
                ws.send(Message::binary(chunk)).await.map_err(send_err)?;
            }
        }
    }
    ws.send(Message::text("")).await.map_err(send_err)?;
    // Keep the socket open (answering pings) until Incus closes it.
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_passed_as_a_list_untouched() {
        let cmd = ExecCommand::new(["sh", "-c", "echo \"$1\"", "--", "a b'c\n$HOME"]);
        let json = serde_json::to_value(cmd.request(false)).unwrap();
        assert_eq!(
            json["command"],
            serde_json::json!(["sh", "-c", "echo \"$1\"", "--", "a b'c\n$HOME"])
        );
    }
}
