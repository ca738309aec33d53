//! `nox doctor`: every backend's host checks, live, with a fix for each problem.

use nox_core::{BackendKind, Check};
use serde::Serialize;

use crate::context::Context;

/// What doctor found. This is the `nox doctor --json` shape.
#[derive(Debug, Serialize)]
pub struct Report {
    pub default_backend: BackendKind,
    /// Whether each backend built into this nox can work here.
    pub ready: std::collections::BTreeMap<BackendKind, bool>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether the default backend can work: doctor's exit status.
    pub fn default_ready(&self) -> bool {
        self.ready
            .get(&self.default_backend)
            .copied()
            .unwrap_or(false)
    }
}

pub fn doctor(ctx: &Context) -> Report {
    let checks: Vec<Check> = ctx.backends.all().flat_map(|b| b.host_checks()).collect();
    let ready = ctx
        .backends
        .all()
        .map(|b| (b.kind(), !checks.iter().any(|c| c.blocks(b.kind()))))
        .collect();
    Report {
        default_backend: ctx.config.defaults.backend,
        ready,
        checks,
    }
}
