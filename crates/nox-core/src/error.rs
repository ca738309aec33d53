//! The errors nox reports. Each says what went wrong; [`Error::hint`] says what to do next,
//! and [`Error::is_bad_input`] decides the exit code (2 for bad input, 1 for everything else).
//!
//! Causes are kept, not flattened: a backend crate's error (libvirt, liblxc, Incus, S3) travels
//! inside [`Error::Backend`], and `std::error::Error::source()` walks from there down to the
//! libvirt, liblxc or I/O error that started it. Every message here already says its cause's
//! words (`starting web: <libvirt's message>`), so printing the top-level `Display` alone gives
//! the user the whole story on one line; the chain is there for programs and for `-vv`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidResource {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("{file}:{line}:{column}: {message}")]
    ConfigSyntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("cannot read config file {file}: {source}")]
    ConfigRead {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A backend (libvirt, liblxc, Incus, S3) failed. The boxed error is the backend crate's
    /// own, which names the step and keeps the library's error as its source.
    #[error("{0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// nox could not turn a value it made into bytes (an intent record, its SSH key, a config
    /// table): never the user's input, so exit 1.
    #[error("{what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// `source`, always a nox error (see [`Error::context`]), happened while nox was `context`
    /// (`unpacking web.tar.zst`); the exit code and the hint are the source's. Boxed as a trait
    /// object so that `source()` yields the nox error itself, not a `Box` of it.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An external program nox ran exited non-zero, timed out or was killed. `stderr_tail`
    /// is its last lines of stderr, on one line, or empty.
    #[error("{program} failed ({how}){}", stderr_suffix(.stderr_tail))]
    Program {
        program: String,
        how: String,
        stderr_tail: String,
    },

    #[error("no instance named {name:?}")]
    NotFound { name: String },

    #[error("an instance named {name:?} already exists ({backend})")]
    AlreadyExists { name: String, backend: String },

    /// The user asked for something nox refuses as asked (delete a running VM without --force,
    /// shrink a disk): bad input, with what to do instead.
    #[error("{message}")]
    Refused { message: String, hint: String },

    /// An operation failed; `hint` says what to do next.
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
}

impl Error {
    /// Bad input (a wrong name, flag, value or config file) exits with 2; anything else with 1.
    pub fn is_bad_input(&self) -> bool {
        if let Error::Context { source, .. } = self {
            return source
                .downcast_ref::<Error>()
                .is_some_and(Error::is_bad_input);
        }
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::InvalidResource { .. }
                | Error::ConfigSyntax { .. }
                // A config file the user pointed at (NOX_CONFIG) or left unreadable.
                | Error::ConfigRead { .. }
                | Error::Usage(_)
                | Error::NotFound { .. }
                | Error::AlreadyExists { .. }
                | Error::Refused { .. }
        )
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::InvalidName { .. } => Some("for example: web, db-1, build-box".into()),
            Error::InvalidResource { what, .. } => Some(match *what {
                "cpus" => "give a count (2), a share of the host (50% or 0.5)".into(),
                "memory" => {
                    "give a size (2G, 512M, or 1024 for MiB) or a share of the host (50% or 0.5)"
                        .into()
                }
                "disk" => {
                    "give a size (10G, or 10 for GiB) or a share of the free space (50% or 0.5)"
                        .into()
                }
                _ => "see `nox create --help`".into(),
            }),
            Error::ConfigSyntax { .. } => Some(
                "fix the file; every key and its type is documented in nox.toml.example".into(),
            ),
            Error::ConfigRead { .. } => {
                Some("check the path and its permissions, or unset NOX_CONFIG".into())
            }
            Error::NotFound { .. } => Some("`nox list` shows the instances".into()),
            Error::AlreadyExists { .. } => {
                Some("pick another name, or `nox delete` the existing one first".into())
            }
            Error::Refused { hint, .. } => Some(hint.clone()),
            Error::Failed { hint, .. } => hint.clone(),
            Error::Context { source, .. } => source.downcast_ref::<Error>().and_then(Error::hint),
            Error::Usage(_)
            | Error::Io { .. }
            | Error::Backend(_)
            | Error::Encode { .. }
            | Error::Program { .. } => None,
        }
    }

    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure with no error underneath and nothing more to advise (a state nox finds
    /// inconsistent, a backup id already taken).
    pub fn failure(message: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
            hint: None,
        }
    }

    /// Wraps a backend crate's error, keeping it (and its own sources) as the cause.
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(source))
    }

    pub fn encode(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Encode {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// This error, as a cause of what nox was doing.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// A wait for a guest gave up; both backends say it the same way.
    pub fn timed_out(name: &str, what: &str, limit: std::time::Duration) -> Self {
        Error::failed(
            format!("timed out after {}s waiting for {what} in {name}", limit.as_secs()),
            format!("a slow host may need a longer --timeout; `nox console {name}` shows the boot while it runs"),
        )
    }

    /// An operation that needs a running instance, asked of a stopped one.
    pub fn not_running(name: &str) -> Self {
        Error::Refused {
            message: format!("{name} is not running"),
            hint: format!("`nox start {name}` first"),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[derive(Debug, thiserror::Error)]
    #[error("starting web: {source}")]
    struct BackendStep {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_backend_error_keeps_its_chain_down_to_the_io_error() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::backend(BackendStep { source: io });
        assert_eq!(e.to_string(), "starting web: denied");
        let step = e.source().expect("the backend error");
        assert!(step.is::<BackendStep>());
        let root = step.source().expect("the io error");
        let io = root.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(!e.is_bad_input());
        assert_eq!(e.hint(), None);
    }

    #[test]
    fn encode_errors_keep_the_serializer_error() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let e = Error::encode("encoding an intent record", json);
        assert!(e.to_string().starts_with("encoding an intent record: "));
        assert!(e.source().unwrap().is::<serde_json::Error>());
        assert!(!e.is_bad_input());
    }

    #[test]
    fn program_failures_read_as_before() {
        let e = Error::Program {
            program: "qemu-img convert".into(),
            how: "exit code 1".into(),
            stderr_tail: String::new(),
        };
        assert_eq!(e.to_string(), "qemu-img convert failed (exit code 1)");
        let e = Error::Program {
            program: "qemu-img convert".into(),
            how: "exit code 1".into(),
            stderr_tail: "no space; left".into(),
        };
        assert_eq!(
            e.to_string(),
            "qemu-img convert failed (exit code 1): no space; left"
        );
        assert!(!e.is_bad_input());
    }

    #[test]
    fn a_context_keeps_the_cause_its_exit_code_and_its_hint() {
        let io = std::io::Error::other("broken pipe");
        let e = Error::io("reading the archive", io).context("unpacking web.tar.zst");
        assert_eq!(
            e.to_string(),
            "unpacking web.tar.zst: reading the archive: broken pipe"
        );
        let inner = e.source().expect("the wrapped nox error");
        assert!(inner.is::<Error>());
        assert!(inner.source().unwrap().is::<std::io::Error>());
        assert!(!e.is_bad_input());
        let refused = Error::not_running("web").context("backing up web");
        assert!(refused.is_bad_input());
        assert_eq!(refused.hint(), Some("`nox start web` first".into()));
    }

    #[test]
    fn failures_without_a_cause_are_not_bad_input() {
        let e = Error::failure("backup web/1 already exists");
        assert_eq!(e.to_string(), "backup web/1 already exists");
        assert!(e.source().is_none());
        assert!(!e.is_bad_input());
        assert_eq!(e.hint(), None);
    }
}
