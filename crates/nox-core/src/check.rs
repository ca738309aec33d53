//! Host checks, as `nox doctor` shows them. Each backend says what it needs of the host.

use serde::Serialize;

use crate::instance::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works.
    Pass,
    /// Works, but worse than it could (software emulation, an optional bridge missing).
    Warn,
    /// Does not work: instances that need it cannot be created.
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A short stable identifier, for scripts: `kvm`, `libvirtd`, `subuid`.
    pub id: String,
    /// Which backend needs this; `None` for checks both need.
    pub backend: Option<BackendKind>,
    pub status: CheckStatus,
    /// What was found, in one line.
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn pass(id: &str, backend: Option<BackendKind>, detail: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            backend,
            status: CheckStatus::Pass,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(
        id: &str,
        backend: Option<BackendKind>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            status: CheckStatus::Warn,
            hint: Some(hint.into()),
            ..Check::pass(id, backend, detail)
        }
    }

    pub fn fail(
        id: &str,
        backend: Option<BackendKind>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            status: CheckStatus::Fail,
            hint: Some(hint.into()),
            ..Check::pass(id, backend, detail)
        }
    }

    /// True when this check failing stops `backend` from working.
    pub fn blocks(&self, backend: BackendKind) -> bool {
        self.status == CheckStatus::Fail && self.backend.is_none_or(|b| b == backend)
    }
}
