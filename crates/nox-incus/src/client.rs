//! The blocking client: one endpoint, one project, a private current-thread tokio runtime.
//! Its methods, by area, live in `instances.rs`, `exec.rs`, `files.rs`, `images.rs`,
//! `backups.rs` and `certificates.rs`.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;

use crate::api::{ClusterMember, Operation, Server};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::tls::{self, ClientIdentity, Fingerprint, Pin};
use crate::transport::{parse_envelope, Call, Connector, Envelope, Http};

/// Timeouts. The defaults suit interactive use; `nox list` across remotes may shorten them.
#[derive(Debug, Clone)]
pub struct Options {
    /// TCP connect plus TLS handshake (or the unix socket connect). An unreachable member
    /// fails within this.
    pub connect_timeout: Duration,
    /// Each ordinary request, from sending to the last byte of the answer; also the longest
    /// pause tolerated in an upload or a download.
    pub request_timeout: Duration,
    /// How long to wait for an asynchronous operation (create, start, backup...) to end.
    pub operation_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(600),
        }
    }
}

/// A client of one Incus server (or cluster member), in one project.
///
/// Every method blocks. No I/O happens until the first call; connections are pooled.
pub struct Client {
    pub(crate) endpoint: Endpoint,
    pub(crate) project: String,
    pub(crate) options: Options,
    pub(crate) identity: Option<ClientIdentity>,
    pub(crate) pin: Option<Fingerprint>,
    pub(crate) http: Http,
    rt: tokio::runtime::Runtime,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("project", &self.project)
            .field("pin", &self.pin)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Characters left as they are in a path segment or query value.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

impl Client {
    /// A client of the local unix socket (root is trusted by the kernel; no TLS).
    pub fn unix(socket: impl Into<std::path::PathBuf>) -> Result<Client> {
        Self::build(
            Endpoint::Unix(socket.into()),
            None,
            None,
            Options::default(),
        )
    }

    /// A client over HTTPS: our certificate presented, the server's accepted only if its
    /// SHA-256 fingerprint is `pin`.
    pub fn https(endpoint: Endpoint, identity: ClientIdentity, pin: Fingerprint) -> Result<Client> {
        Self::build(endpoint, Some(identity), Some(pin), Options::default())
    }

    /// Either, from a remote's URL (`unix:///path` or `https://host:port`). HTTPS needs the
    /// identity and the pinned fingerprint.
    pub fn connect(
        url: &str,
        identity: Option<ClientIdentity>,
        pin: Option<Fingerprint>,
        options: Options,
    ) -> Result<Client> {
        Self::build(url.parse()?, identity, pin, options)
    }

    pub(crate) fn build(
        endpoint: Endpoint,
        identity: Option<ClientIdentity>,
        pin: Option<Fingerprint>,
        options: Options,
    ) -> Result<Client> {
        let tls = match (&endpoint, &pin) {
            (Endpoint::Unix(_), _) => None,
            (Endpoint::Https { .. }, Some(pin)) => Some(tls::client_config(
                Pin::Fingerprint(pin.clone()),
                identity.as_ref(),
            )?),
            (Endpoint::Https { .. }, None) => {
                return Err(Error::InvalidUrl {
                    url: endpoint.to_string(),
                    reason: "HTTPS needs the server certificate's fingerprint pinned".into(),
                })
            }
        };
        let connector = Connector::new(endpoint.clone(), tls, options.connect_timeout);
        Ok(Client {
            endpoint,
            project: "default".into(),
            options,
            identity,
            pin,
            http: Http::new(connector),
            rt: runtime()?,
        })
    }

    /// The same client in another project.
    pub fn with_project(mut self, project: &str) -> Client {
        self.project = project.to_string();
        self
    }

    /// The same client with other timeouts.
    pub fn with_options(self, options: Options) -> Result<Client> {
        let mut c = Self::build(self.endpoint, self.identity, self.pin, options)?;
        c.project = self.project;
        Ok(c)
    }

    /// A client of another server (another cluster member, say) with the same credentials,
    /// pin, project and timeouts.
    pub fn for_endpoint(&self, endpoint: Endpoint) -> Result<Client> {
        let mut c = Self::build(
            endpoint,
            self.identity.clone(),
            self.pin.clone(),
            self.options.clone(),
        )?;
        c.project = self.project.clone();
        Ok(c)
    }

    /// A client of one cluster member by name, over HTTPS at the URL the cluster lists for it
    /// (the cluster certificate, so the pin, is the same on every member).
    pub fn for_member(&self, member: &str) -> Result<Client> {
        if self.endpoint.is_unix() {
            return Err(Error::InvalidUrl {
                url: self.endpoint.to_string(),
                reason: format!(
                    "a unix-socket client cannot reach member `{member}`: use that member's own socket"
                ),
            });
        }
        let m = self
            .cluster_members()?
            .into_iter()
            .find(|m| m.server_name == member)
            .ok_or_else(|| Error::Api {
                method: "GET".into(),
                path: "/1.0/cluster/members".into(),
                status: 404,
                message: format!("no cluster member named `{member}`"),
            })?;
        self.for_endpoint(m.url.parse()?)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The pinned server fingerprint (HTTPS only).
    pub fn pinned_fingerprint(&self) -> Option<&Fingerprint> {
        self.pin.as_ref()
    }

    /// `GET /1.0`: the server, and whether it trusts this client.
    pub fn server(&self) -> Result<Server> {
        self.get("/1.0".into())
    }

    /// `GET /1.0/cluster/members?recursion=1`.
    pub fn cluster_members(&self) -> Result<Vec<ClusterMember>> {
        self.get("/1.0/cluster/members?recursion=1".into())
    }

    /// Waits for an operation to end (`/1.0/operations/ID/wait`), up to the operation
    /// timeout. A failed or cancelled operation is an [`Error::Operation`] with its `err`.
    pub fn wait_operation(&self, id: &str) -> Result<Operation> {
        self.block_on(self.wait_operation_async(id))
    }

    /// One operation as it stands.
    pub fn operation(&self, id: &str) -> Result<Operation> {
        self.block_on(self.operation_async(id))
    }

    /// `GET /1.0/operations?recursion=1`: every operation of the project that Incus still
    /// knows (a cluster answers for all its members), whatever its status.
    pub fn operations(&self) -> Result<Vec<Operation>> {
        let by_status: std::collections::BTreeMap<String, Vec<Operation>> =
            self.get(self.scoped("/1.0/operations?recursion=1"))?;
        Ok(by_status.into_values().flatten().collect())
    }

    // ---- plumbing shared by the area files ----

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// `path` with the project added to its query.
    pub(crate) fn scoped(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}project={}", enc(&self.project))
    }

    pub(crate) fn call_async(&self, call: Call) -> impl Future<Output = Result<Envelope>> + '_ {
        self.http.envelope(call, self.options.request_timeout)
    }

    pub(crate) fn call(&self, call: Call) -> Result<Envelope> {
        self.block_on(self.call_async(call))
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: String) -> Result<T> {
        let what = format!("GET {path}");
        let env = self.call(Call::new(Method::GET, path))?;
        serde_json::from_value(env.metadata).map_err(|e| Error::protocol(what, e))
    }

    /// Sends a call and, when Incus answers with an operation, waits for it to end.
    pub(crate) fn call_and_wait(&self, call: Call) -> Result<Option<Operation>> {
        self.block_on(async {
            let env = self.call_async(call).await?;
            self.finish_async(env).await
        })
    }

    pub(crate) async fn finish_async(&self, env: Envelope) -> Result<Option<Operation>> {
        if env.kind != "async" {
            return Ok(None);
        }
        let id = operation_id(&env)?;
        self.wait_operation_async(&id).await.map(Some)
    }

    pub(crate) async fn wait_operation_async(&self, id: &str) -> Result<Operation> {
        let started = Instant::now();
        loop {
            let left = self
                .options
                .operation_timeout
                .saturating_sub(started.elapsed());
            // Long-poll in slices, so a dead member is noticed and the total is bounded.
            let slice = left.min(Duration::from_secs(30)).as_secs().max(1);
            let path = self.scoped(&format!("/1.0/operations/{}/wait?timeout={slice}", enc(id)));
            let what = format!("GET {path}");
            let timeout = Duration::from_secs(slice) + self.options.request_timeout;
            let (resp, method, path) = self
                .http
                .send(Call::new(Method::GET, path), timeout)
                .await?;
            let (status, body) = self.http.read_body(resp, timeout).await?;
            let env = parse_envelope(status, &body, &method, &path);
            let op = match env {
                Ok(env) => serde_json::from_value::<Operation>(env.metadata)
                    .map_err(|e| Error::protocol(what, e))?,
                // Incus sends its 200 header before waiting, then an error envelope when the
                // operation failed or when this wait slice ran out: the operation tells which.
                Err(Error::Api { message, .. }) if status.is_success() => {
                    match self.operation_async(id).await {
                        Ok(op) if !op.is_final() => continue,
                        Ok(op) => op,
                        Err(e) if e.is_not_found() => {
                            return Err(Error::Operation {
                                id: id.to_string(),
                                description: String::new(),
                                message,
                            })
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if op.is_final() {
                return finished(op);
            }
            if started.elapsed() >= self.options.operation_timeout {
                return Err(Error::Timeout {
                    endpoint: self.http.label().to_string(),
                    what: "waiting for an operation",
                    after: self.options.operation_timeout,
                });
            }
        }
    }

    async fn operation_async(&self, id: &str) -> Result<Operation> {
        let path = self.scoped(&format!("/1.0/operations/{}", enc(id)));
        let what = format!("GET {path}");
        let env = self.call_async(Call::new(Method::GET, path)).await?;
        serde_json::from_value(env.metadata).map_err(|e| Error::protocol(what, e))
    }
}

/// A final operation: itself when it succeeded, its error otherwise.
fn finished(op: Operation) -> Result<Operation> {
    if op.succeeded() {
        return Ok(op);
    }
    Err(Error::Operation {
        id: op.id.clone(),
        description: op.description.clone(),
        message: if op.err.is_empty() {
            op.status.clone()
        } else {
            op.err.clone()
        },
    })
}

/// The operation ID of an async envelope (`/1.0/operations/ID`, or the metadata's `id`).
pub(crate) fn operation_id(env: &Envelope) -> Result<String> {
    if let Some(id) = env.metadata.get("id").and_then(|v| v.as_str()) {
        return Ok(id.to_string());
    }
    env.operation
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .ok_or_else(|| Error::protocol("an async response", "no operation ID"))
}

pub(crate) fn operation_of(env: &Envelope) -> Result<Operation> {
    serde_json::from_value(env.metadata.clone())
        .map_err(|e| Error::protocol("an async response's operation", e))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("starting the client's runtime", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_values_are_percent_encoded() {
        assert_eq!(enc("web-1"), "web-1");
        assert_eq!(enc("/etc/a b&c=d"), "%2Fetc%2Fa%20b%26c%3Dd");
    }

    #[test]
    fn https_without_a_pin_is_refused() {
        let err =
            Client::connect("https://127.0.0.1:8443", None, None, Options::default()).unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");
    }

    #[test]
    fn project_is_added_to_the_query() {
        let c = Client::unix("/nonexistent/unix.socket")
            .unwrap()
            .with_project("p 1");
        assert_eq!(c.scoped("/1.0/instances"), "/1.0/instances?project=p%201");
        assert_eq!(
            c.scoped("/1.0/instances?recursion=1"),
            "/1.0/instances?recursion=1&project=p%201"
        );
    }

    #[test]
    fn a_client_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Client>();
        send_sync::<Error>();
    }

    #[test]
    fn an_absent_socket_fails_fast_as_unreachable() {
        let c = Client::unix("/nonexistent/unix.socket").unwrap();
        let err = c.server().unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
    }
}
