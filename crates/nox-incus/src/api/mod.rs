//! Incus's REST API types, from Incus 6.0's OpenAPI document (doc/rest-api.yaml) and
//! shared/api/*.go: what nox sends and reads, no more. Field names are Incus's JSON names.
//!
//! Responses are read leniently: every field has a default, and Go's `null` for an empty map
//! or list reads as empty, so a newer server's extra or missing fields do not break nox.
//! Requests are written exactly; their JSON is pinned by the golden files in `golden/`.

mod backup;
mod certificate;
mod exec;
mod image;
mod instance;
mod operation;
mod server;

pub use backup::*;
pub use certificate::*;
pub use exec::*;
pub use image::*;
pub use instance::*;
pub use operation::*;
pub use server::*;

use serde::{Deserialize, Deserializer};

/// Reads Go's `null` (a nil map or slice) as the empty value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod golden_tests;
