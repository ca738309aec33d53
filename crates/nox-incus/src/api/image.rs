//! Images and aliases (shared/api/image.go).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::null_default;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Image {
    pub fingerprint: String,
    pub filename: String,
    pub size: i64,
    pub architecture: String,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type")]
    pub kind: String,
    pub public: bool,
    pub auto_update: bool,
    pub cached: bool,
    #[serde(deserialize_with = "null_default")]
    pub properties: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub aliases: Vec<ImageAlias>,
    #[serde(deserialize_with = "null_default")]
    pub profiles: Vec<String>,
    pub created_at: String,
    pub uploaded_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub project: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAlias {
    pub name: String,
    pub description: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImageAliasesPost {
    pub name: String,
    pub description: String,
    /// The image's fingerprint.
    pub target: String,
    /// `container` or `virtual-machine`; empty for any.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /1.0/images/aliases/NAME`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageAliasEntry {
    pub name: String,
    pub description: String,
    pub target: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// What an image's `metadata.yaml` says (shared/api/image.go, `ImageMetadata`): what Incus needs
/// beside a bare rootfs tarball to import it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMetadata {
    /// Incus's name for it: `x86_64`, `aarch64`...
    pub architecture: String,
    /// Unix seconds.
    pub creation_date: i64,
    /// `description`, `os`, `release`, ... shown by `incus image list`.
    pub properties: BTreeMap<String, String>,
}
