//! The errors nox reports. Each says what went wrong; [`Error::hint`] says what to do next,
//! and [`Error::is_bad_input`] decides the exit code (2 for bad input, 1 for everything else).

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

    #[error("{0}")]
    Backend(String),

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
            Error::Usage(_) | Error::Io { .. } | Error::Backend(_) => None,
        }
    }

    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
            hint: Some(hint.into()),
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
