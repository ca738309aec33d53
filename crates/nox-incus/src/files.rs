//! Files in an instance: `POST`/`GET`/`DELETE /1.0/instances/NAME/files?path=...`.

use http::header::CONTENT_TYPE;
use http::{HeaderName, Method};

use crate::client::{enc, Client};
use crate::error::Result;
use crate::instances::instance_path;
use crate::transport::{full, Call};

/// Owner and mode of a pushed file. `None` keeps Incus's default (root, 0644).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileOwnership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

impl Client {
    /// Writes `contents` to `path` in the instance (replacing it), with that owner and mode.
    pub fn push_file(
        &self,
        instance: &str,
        path: &str,
        contents: &[u8],
        own: FileOwnership,
    ) -> Result<()> {
        let url = self.scoped(&format!(
            "{}/files?path={}",
            instance_path(instance),
            enc(path)
        ));
        let mut call = Call::new(Method::POST, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(HeaderName::from_static("x-incus-type"), "file")
            .header(HeaderName::from_static("x-incus-write"), "overwrite");
        if let Some(uid) = own.uid {
            call = call.header(HeaderName::from_static("x-incus-uid"), uid.to_string());
        }
        if let Some(gid) = own.gid {
            call = call.header(HeaderName::from_static("x-incus-gid"), gid.to_string());
        }
        if let Some(mode) = own.mode {
            // Incus parses the mode with a leading 0 as octal.
            call = call.header(
                HeaderName::from_static("x-incus-mode"),
                format!("0{mode:o}"),
            );
        }
        call.body = full(contents.to_vec());
        self.call(call)?;
        Ok(())
    }

    /// Removes a file from the instance (`DELETE .../files`); `false` when it was not there.
    pub fn delete_file(&self, instance: &str, path: &str) -> Result<bool> {
        let url = self.scoped(&format!(
            "{}/files?path={}",
            instance_path(instance),
            enc(path)
        ));
        match self.call(Call::new(Method::DELETE, url)) {
            Ok(_) => Ok(true),
            // Incus answers a missing file with 404, or (through its SFTP layer) with its
            // "not exist" text under another status.
            Err(e)
                if e.is_not_found()
                    || (e.status().is_some() && e.to_string().contains("not exist")) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a file from the instance.
    pub fn pull_file(&self, instance: &str, path: &str) -> Result<Vec<u8>> {
        let url = self.scoped(&format!(
            "{}/files?path={}",
            instance_path(instance),
            enc(path)
        ));
        let timeout = self.options.request_timeout;
        self.block_on(async {
            let resp = self.http.raw(Call::new(Method::GET, url), timeout).await?;
            let (_, body) = self.http.read_body(resp, timeout).await?;
            Ok(body.to_vec())
        })
    }
}
