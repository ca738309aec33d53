//! One file into one object, surviving a server that cuts the connection: a small file is one
//! PUT, tried again whole; a large one is a multipart upload of 8 MiB parts, each part tried
//! again on its own (the file is read part by part, never whole into memory). A multipart
//! upload that fails for good is aborted, so the bucket keeps no orphan parts.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use nox_core::{Error, Progress};
use s3::error::S3Error;
use s3::serde_types::Part;

use crate::retry::{retry, POLICY};
use crate::Remote;

/// Multipart part size (S3's minimum is 5 MiB; rust-s3's chunk size).
pub const PART_SIZE: usize = 8 << 20;
const CONTENT_TYPE: &str = "application/octet-stream";

impl Remote {
    /// Uploads the file at `path` to `key`, each request retried where the failure was on
    /// the way (see `retry.rs`). `what` names the file in messages.
    pub(crate) fn put_file(
        &self,
        key: &str,
        path: &Path,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        let io = |e| Error::io(format!("reading {}", path.display()), e);
        let mut file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let retrying = |n: u32, e: &S3Error| {
            progress.warn(&format!(
                "uploading {what}: {} (try {n} of {}), trying again",
                short(e),
                POLICY.attempts
            ))
        };
        if size <= PART_SIZE as u64 {
            let mut data = Vec::with_capacity(size as usize);
            file.read_to_end(&mut data).map_err(io)?;
            retry(POLICY, &retrying, |_| self.bucket.put_object(key, &data))
                .map_err(|e| self.error(&format!("uploading {what}"), e))?;
            progress.bytes(size, Some(size));
            return Ok(());
        }
        let upload = retry(POLICY, &retrying, |_| {
            self.bucket.initiate_multipart_upload(key, CONTENT_TYPE)
        })
        .map_err(|e| self.error(&format!("starting the upload of {what}"), e))?;
        let result = self.put_parts(
            &mut file,
            size,
            &upload.key,
            &upload.upload_id,
            &retrying,
            progress,
        );
        if result.is_err() {
            // Best effort: the bucket should not keep (and bill) the parts of a failed upload.
            let _ = self.bucket.abort_upload(&upload.key, &upload.upload_id);
        }
        result.map_err(|e| match e {
            Failure::Read(e) => io(e),
            Failure::S3(e) => self.error(&format!("uploading {what}"), e),
        })
    }

    fn put_parts(
        &self,
        file: &mut File,
        size: u64,
        key: &str,
        upload_id: &str,
        retrying: &dyn Fn(u32, &S3Error),
        progress: &dyn Progress,
    ) -> Result<(), Failure> {
        let mut buf = vec![0u8; PART_SIZE];
        let mut parts: Vec<Part> = Vec::new();
        let mut done = 0u64;
        loop {
            let len = read_full(file, &mut buf).map_err(Failure::Read)?;
            if len == 0 {
                break;
            }
            if nox_core::interrupt::requested() {
                return Err(Failure::Read(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "interrupted",
                )));
            }
            let number = parts.len() as u32 + 1;
            let part = retry(POLICY, retrying, |_| {
                self.bucket
                    .put_multipart_chunk(&buf[..len], key, number, upload_id, CONTENT_TYPE)
            })
            .map_err(Failure::S3)?;
            parts.push(part);
            done += len as u64;
            progress.bytes(done, Some(size));
        }
        retry(POLICY, retrying, |attempt| {
            match self
                .bucket
                .complete_multipart_upload(key, upload_id, parts.clone())
            {
                // The first completion went through but its answer was lost: the upload is
                // gone because the object is made. Believe it only if the object's size is
                // the file's.
                Err(S3Error::HttpFailWithBody(404, body))
                    if attempt > 1 && body.contains("NoSuchUpload") =>
                {
                    let (head, _) = self.bucket.head_object(key)?;
                    if head.content_length == Some(size as i64) {
                        Ok(())
                    } else {
                        Err(S3Error::HttpFailWithBody(404, body))
                    }
                }
                r => r.map(|_| ()),
            }
        })
        .map_err(Failure::S3)
    }
}

enum Failure {
    Read(std::io::Error),
    S3(S3Error),
}

/// Fills `buf` from `r` as far as the file goes: a part is always full but the last.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An error in one line, for a retry notice.
pub(crate) fn short(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, _) => format!("HTTP {status}"),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_full_but_the_last() {
        // A reader that hands out 3 bytes at a time, like a pipe.
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut r = Trickle((0..25u8).collect());
        let mut buf = [0u8; 10];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 10);
        assert_eq!(buf[9], 9);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 10);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 5);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 0);
    }
}
