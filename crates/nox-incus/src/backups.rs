//! Instance backups: Incus makes an export tarball, serves it, and imports one as a new
//! instance, on whichever member receives the upload (Incus 6.0 ignores `target` there: to
//! restore on another member, import through a client of that member).

use std::io::{Read, Write};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, Method};

use crate::api::{InstanceBackup, InstanceBackupsPost};
use crate::client::{enc, Client};
use crate::error::Result;
use crate::instances::instance_path;
use crate::transport::{reader_body, stream_body, Call, Progress};

impl Client {
    /// `POST /1.0/instances/NAME/backups`, waiting until the export is made.
    pub fn create_backup(&self, instance: &str, req: &InstanceBackupsPost) -> Result<()> {
        let path = self.scoped(&format!("{}/backups", instance_path(instance)));
        self.call_and_wait(Call::new(Method::POST, path).json(req))?;
        Ok(())
    }

    /// `GET /1.0/instances/NAME/backups?recursion=1`.
    pub fn backups(&self, instance: &str) -> Result<Vec<InstanceBackup>> {
        self.get(self.scoped(&format!("{}/backups?recursion=1", instance_path(instance))))
    }

    /// `GET /1.0/instances/NAME/backups/BACKUP/export`, streamed into `sink`. Returns the
    /// number of bytes.
    pub fn download_backup(
        &self,
        instance: &str,
        backup: &str,
        sink: &mut dyn Write,
    ) -> Result<u64> {
        let path = self.scoped(&format!(
            "{}/backups/{}/export",
            instance_path(instance),
            enc(backup)
        ));
        let idle = self.options.request_timeout;
        self.block_on(async {
            let resp = self.http.raw(Call::new(Method::GET, path), idle).await?;
            stream_body(&self.http, resp, sink, idle).await
        })
    }

    /// `DELETE /1.0/instances/NAME/backups/BACKUP`.
    pub fn delete_backup(&self, instance: &str, backup: &str) -> Result<()> {
        let path = self.scoped(&format!(
            "{}/backups/{}",
            instance_path(instance),
            enc(backup)
        ));
        self.call_and_wait(Call::new(Method::DELETE, path))?;
        Ok(())
    }

    /// `POST /1.0/instances` with the backup tarball as body (`application/octet-stream`):
    /// creates instance `name` (or the backup's own name) in `pool` (or the backup's), on the
    /// member this client talks to. `len` (if known) is sent as Content-Length.
    pub fn import_backup(
        &self,
        source: Box<dyn Read + Send>,
        len: Option<u64>,
        name: Option<&str>,
        pool: Option<&str>,
    ) -> Result<()> {
        let progress = Progress::new();
        let mut call = Call::new(Method::POST, self.scoped("/1.0/instances"))
            .header(CONTENT_TYPE, "application/octet-stream");
        if let Some(len) = len {
            call = call.header(CONTENT_LENGTH, len.to_string());
        }
        if let Some(name) = name {
            call = call.header(HeaderName::from_static("x-incus-name"), name);
        }
        if let Some(pool) = pool {
            call = call.header(HeaderName::from_static("x-incus-pool"), pool);
        }
        call.body = reader_body(source, progress.clone());
        let idle = self.options.request_timeout;
        self.block_on(async {
            let (resp, method, path) = self.http.send_upload(call, progress, idle).await?;
            let (status, body) = self.http.read_body(resp, idle).await?;
            let env = crate::transport::parse_envelope(status, &body, &method, &path)?;
            self.finish_async(env).await
        })?;
        Ok(())
    }
}
