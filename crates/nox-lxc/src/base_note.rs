//! The note beside each container base, `LXCPATH/.nox/images/KEY.json`: the `[images]` name
//! it was pulled as, where it came from, and which downloaded files in the cache are its, so
//! `nox image list` can name it and `rm` and `prune` remove all of it.

use std::path::{Path, PathBuf};

use nox_core::Error;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseNote {
    /// The `[images]` name it was first pulled as.
    pub name: String,
    /// `sha256:HEX` of a tarball source; `fp:HEX`, the image's fingerprint, for `images:`.
    pub checksum: String,
    /// Where the rootfs came from.
    pub url: String,
    /// The downloaded files (the rootfs tarball, and for `images:` the metadata tarball), by
    /// file name in the cache directory.
    pub files: Vec<String>,
}

impl BaseNote {
    pub fn path(dir: &Path, key: &str) -> PathBuf {
        dir.join(format!("{key}.json"))
    }

    pub fn read(path: &Path) -> Option<BaseNote> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes the note unless the base has one: a base keeps the name it was first pulled
    /// as, like the VM cache's notes.
    pub fn write_once(&self, dir: &Path, key: &str) -> Result<(), Error> {
        let path = Self::path(dir, key);
        if Self::read(&path).is_some() {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::encode(format!("recording image {}", self.name), e))?;
        // Written whole under a temporary name, then renamed: a killed nox leaves no half note.
        let part = dir.join(format!(".{key}.json.part"));
        std::fs::write(&part, json)
            .and_then(|()| std::fs::rename(&part, &path))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}
