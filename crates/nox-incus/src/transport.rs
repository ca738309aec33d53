//! HTTP/1.1 over the unix socket or TLS (hyper 1 with hyper-util's pooled client and a
//! connector of our own), Incus's response envelope, and timeouts. All async; the blocking
//! [`Client`](crate::Client) drives it on its private runtime.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::tls;

/// A request body: bytes in memory, or a stream (uploads).
pub(crate) type Body = BoxBody<Bytes, io::Error>;

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A connection to one server: the unix socket, or TCP with TLS.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens connections to one endpoint, within the connect timeout (TCP and TLS handshake).
#[derive(Clone)]
pub(crate) struct Connector {
    endpoint: Arc<Endpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
}

impl Connector {
    pub(crate) fn new(
        endpoint: Endpoint,
        tls: Option<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Connector {
            endpoint: Arc::new(endpoint),
            tls: tls.map(Arc::new),
            connect_timeout,
        }
    }

    pub(crate) async fn connect(&self) -> Result<Stream, Error> {
        let label = self.endpoint.to_string();
        let fail = |message: String| Error::Connect {
            endpoint: label.clone(),
            message,
        };
        let attempt = async {
            match &*self.endpoint {
                Endpoint::Unix(path) => UnixStream::connect(path)
                    .await
                    .map(Stream::Unix)
                    .map_err(|e| fail(e.to_string())),
                Endpoint::Https { host, port } => {
                    let config = self
                        .tls
                        .clone()
                        .ok_or_else(|| fail("no TLS configuration for an HTTPS endpoint".into()))?;
                    let tcp = TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    let _ = tcp.set_nodelay(true);
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| fail(format!("bad server name `{host}`: {e}")))?;
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| match tls::mismatch_in(&e) {
                            Some((expected, actual)) => Error::FingerprintMismatch {
                                endpoint: label.clone(),
                                expected: expected.to_string(),
                                actual: actual.to_string(),
                            },
                            None => fail(format!("TLS handshake failed: {e}")),
                        })?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| Error::Timeout {
                endpoint: label.clone(),
                what: "connecting",
                after: self.connect_timeout,
            })?
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<TokioIo<Stream>, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(TokioIo::new) })
    }
}

/// Incus's response envelope (shared/api/response.go).
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// One request, before it is sent.
pub(crate) struct Call {
    pub method: Method,
    /// Path and query, from `/1.0`.
    pub path: String,
    pub body: Body,
    pub headers: Vec<(HeaderName, String)>,
}

impl Call {
    pub(crate) fn new(method: Method, path: String) -> Self {
        Call {
            method,
            path,
            body: empty(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Self {
        let bytes = serde_json::to_vec(body).expect("request bodies serialize");
        self.body = full(bytes);
        self.header(http::header::CONTENT_TYPE, "application/json")
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn describe(&self) -> (String, String) {
        (self.method.to_string(), self.path.clone())
    }
}

/// The pooled HTTP client for one endpoint.
pub(crate) struct Http {
    client: hyper_util::client::legacy::Client<Connector, Body>,
    pub(crate) connector: Connector,
    /// `http://incus.socket` for the unix socket (the authority is only a pool key there), or
    /// `https://host:port`.
    base: String,
    label: String,
}

impl Http {
    pub(crate) fn new(connector: Connector) -> Self {
        let base = match &*connector.endpoint {
            Endpoint::Unix(_) => "http://incus.socket".to_string(),
            e @ Endpoint::Https { .. } => format!("https://{}", e.authority()),
        };
        let label = connector.endpoint.to_string();
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        Http {
            client,
            connector,
            base,
            label,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn timeout(&self, what: &'static str, after: Duration) -> Error {
        Error::Timeout {
            endpoint: self.label.clone(),
            what,
            after,
        }
    }

    /// Sends a call; the response's headers must arrive within `timeout`.
    pub(crate) async fn send(
        &self,
        call: Call,
        timeout: Duration,
    ) -> Result<(Response<Incoming>, String, String), Error> {
        let (method, path) = call.describe();
        let mut req = Request::builder()
            .method(call.method)
            .uri(format!("{}{}", self.base, call.path))
            .header(http::header::USER_AGENT, "nox-incus");
        for (name, value) in call.headers {
            let value = HeaderValue::from_str(&value).map_err(|e| Error::Protocol {
                what: format!("{method} {path}"),
                message: format!("header {name}: {e}"),
            })?;
            req = req.header(name, value);
        }
        let req = req.body(call.body).map_err(|e| Error::Protocol {
            what: format!("{method} {path}"),
            message: e.to_string(),
        })?;
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| self.timeout("waiting for a response", timeout))?
            .map_err(|e| self.transport_error(e))?;
        Ok((resp, method, path))
    }

    /// Sends a call whose body is an upload, failing only if no progress is made for
    /// `idle` (a large upload may take long, a stalled one must not hang).
    pub(crate) async fn send_upload(
        &self,
        call: Call,
        progress: Arc<Progress>,
        idle: Duration,
    ) -> Result<(Response<Incoming>, String, String), Error> {
        let sending = self.send(call, Duration::MAX);
        // Only the upload itself is watched: once the whole body is sent, the server may take
        // its time (unpacking an image) before it answers.
        let watchdog = async {
            loop {
                tokio::time::sleep(idle / 4).await;
                if progress.done.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
                if progress.idle_for() > idle {
                    return self.timeout("uploading (no progress)", idle);
                }
            }
        };
        tokio::select! {
            r = sending => r,
            e = watchdog => Err(e),
        }
    }

    /// Maps a hyper-util error, finding our own connect error in its chain.
    fn transport_error(&self, e: hyper_util::client::legacy::Error) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if let Some(ours) = err.downcast_ref::<Error>() {
                return ours.clone();
            }
            source = err.source();
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(err) = source {
            message.push_str(": ");
            message.push_str(&err.to_string());
            source = err.source();
        }
        Error::Transport {
            endpoint: self.label.clone(),
            message,
        }
    }

    /// Reads a whole body within `timeout` (counted from now).
    pub(crate) async fn read_body(
        &self,
        resp: Response<Incoming>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), Error> {
        let status = resp.status();
        let body = tokio::time::timeout(timeout, resp.into_body().collect())
            .await
            .map_err(|_| self.timeout("reading the response", timeout))?
            .map_err(|e| Error::Transport {
                endpoint: self.label.clone(),
                message: format!("reading the response: {e}"),
            })?
            .to_bytes();
        Ok((status, body))
    }

    /// A call answered by Incus's JSON envelope: refusals become [`Error::Api`] with Incus's
    /// `error` text.
    pub(crate) async fn envelope(&self, call: Call, timeout: Duration) -> Result<Envelope, Error> {
        let started = Instant::now();
        let (resp, method, path) = self.send(call, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        let (status, body) = self.read_body(resp, left).await?;
        tracing::debug!(status = status.as_u16(), took = ?started.elapsed(), "incus {method} {path}");
        parse_envelope(status, &body, &method, &path)
    }

    /// A call answered by raw bytes on success (files, exports, exec logs), or by an envelope
    /// on failure. Returns the response for streaming.
    pub(crate) async fn raw(
        &self,
        call: Call,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Error> {
        let (resp, method, path) = self.send(call, timeout).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let (status, body) = self.read_body(resp, timeout).await?;
        Err(parse_envelope(status, &body, &method, &path)
            .err()
            .unwrap_or_else(|| Error::Api {
                method,
                path,
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).trim().to_string(),
            }))
    }
}

/// Parses an envelope; an error status or an `error` envelope becomes [`Error::Api`].
pub(crate) fn parse_envelope(
    status: StatusCode,
    body: &[u8],
    method: &str,
    path: &str,
) -> Result<Envelope, Error> {
    let parsed: Result<Envelope, _> = serde_json::from_slice(body);
    match parsed {
        Ok(env) if env.kind == "error" || !status.is_success() => Err(Error::Api {
            method: method.into(),
            path: path.into(),
            status: if env.error_code != 0 {
                env.error_code
            } else {
                status.as_u16()
            },
            message: if env.error.is_empty() {
                status.to_string()
            } else {
                env.error
            },
        }),
        Ok(env) => Ok(env),
        Err(_) if !status.is_success() => Err(Error::Api {
            method: method.into(),
            path: path.into(),
            status: status.as_u16(),
            message: String::from_utf8_lossy(body).trim().to_string(),
        }),
        Err(e) => Err(Error::protocol(format!("{method} {path}"), e)),
    }
}

/// Upload progress, shared by the reader thread and the watchdog.
pub(crate) struct Progress {
    started: Instant,
    last_ms: AtomicU64,
    pub(crate) done: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Progress {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
        })
    }

    fn tick(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// A streaming body from a blocking reader: a thread reads chunks and hands them over a small
/// channel (so progress tracks what hyper actually sends).
pub(crate) fn reader_body(mut reader: Box<dyn io::Read + Send>, progress: Arc<Progress>) -> Body {
    const CHUNK: usize = 256 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let chunk = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
            progress.tick();
        }
        progress.tick();
        progress.done.store(true, Ordering::Relaxed);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk.map(Frame::data), rx))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// Streams a response body into `sink`, failing if no data arrives for `idle`.
pub(crate) async fn stream_body(
    http: &Http,
    resp: Response<Incoming>,
    sink: &mut dyn io::Write,
    idle: Duration,
) -> Result<u64, Error> {
    let mut body = resp.into_body().into_data_stream();
    let mut total = 0u64;
    loop {
        let next = tokio::time::timeout(idle, body.next())
            .await
            .map_err(|_| http.timeout("downloading (no data)", idle))?;
        match next {
            None => break,
            Some(Ok(chunk)) => {
                sink.write_all(&chunk)
                    .map_err(|e| Error::io("writing the download", e))?;
                total += chunk.len() as u64;
            }
            Some(Err(e)) => {
                return Err(Error::Transport {
                    endpoint: http.label().to_string(),
                    message: format!("downloading: {e}"),
                })
            }
        }
    }
    sink.flush()
        .map_err(|e| Error::io("writing the download", e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_envelope_carries_incus_message() {
        let body = br#"{"type":"error","status":"","status_code":0,"operation":"","error_code":404,"error":"Instance not found","metadata":null}"#;
        let err =
            parse_envelope(StatusCode::NOT_FOUND, body, "GET", "/1.0/instances/x").unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "Incus refused GET /1.0/instances/x (404): Instance not found"
        );
    }

    #[test]
    fn a_non_json_error_keeps_the_body_text() {
        let err =
            parse_envelope(StatusCode::BAD_GATEWAY, b"upstream down\n", "GET", "/1.0").unwrap_err();
        assert_eq!(err.status(), Some(502));
        assert!(err.to_string().ends_with("upstream down"), "{err}");
    }

    #[test]
    fn sync_and_async_envelopes_parse() {
        let sync = br#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":{"a":1}}"#;
        let env = parse_envelope(StatusCode::OK, sync, "GET", "/1.0").unwrap();
        assert_eq!(env.kind, "sync");
        assert_eq!(env.metadata["a"], 1);
        let asynchronous = br#"{"type":"async","status":"Operation created","status_code":100,"operation":"/1.0/operations/abc","error_code":0,"error":"","metadata":{"id":"abc"}}"#;
        let env =
            parse_envelope(StatusCode::ACCEPTED, asynchronous, "POST", "/1.0/instances").unwrap();
        assert_eq!(env.operation, "/1.0/operations/abc");
    }
}
