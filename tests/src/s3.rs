//! A real S3 server for the live tests: moto in server mode (installed by `cargo xtask setup`),
//! started on 127.0.0.1 on a free port and killed when dropped. After its first few requests
//! (which create an IAM user, its access key and policy) moto checks every request's SigV4
//! signature against that key, as AWS does, so wrong credentials are refused for real.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `cargo xtask setup` puts moto's virtualenv (`xtask/src/setup.rs`, MOTO_VENV).
pub const MOTO_VENV: &str = "/var/cache/nox/moto";

/// Requests moto serves without checking credentials: the three IAM calls of [`SETUP`].
const UNAUTHENTICATED_REQUESTS: &str = "3";

/// Creates the user, key and policy (unauthenticated), then the bucket with the new key.
const SETUP: &str = r#"
import json, sys, boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
anon = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="nox")
key = iam.create_access_key(UserName="nox")["AccessKey"]
iam.put_user_policy(UserName="nox", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"])
print(key["SecretAccessKey"])
"#;

#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Server {
    pub fn start(bucket: &str) -> S3Server {
        let venv = PathBuf::from(MOTO_VENV);
        let server = venv.join("bin/moto_server");
        assert!(
            server.is_file(),
            "{} is missing: run `cargo xtask setup`, which installs moto",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", UNAUTHENTICATED_REQUESTS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut me = S3Server {
            child,
            endpoint,
            bucket: bucket.into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", SETUP, &me.endpoint, bucket])
            .output()
            .expect("running the moto setup");
        assert!(
            out.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        me.access_key_id = lines.next().unwrap().trim().into();
        me.secret_access_key = lines.next().unwrap().trim().into();
        me
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches every object under a prefix into a directory (keys as paths) and prints each key,
/// then the number of multipart uploads still open in the bucket.
const FETCH_ALL: &str = r#"
import os, sys, boto3
endpoint, bucket, prefix, out = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        path = os.path.join(out, o["Key"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, o["Key"], path)
        print("OBJECT", o["Key"])
print("OPEN-UPLOADS", len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])))
"#;

/// What is in the bucket, read with boto3 (not nox's client).
#[derive(Debug)]
pub struct BucketContents {
    /// Keys, each fetched to `dir/KEY`.
    pub keys: Vec<String>,
    /// Multipart uploads begun and neither completed nor aborted.
    pub open_uploads: usize,
}

impl S3Server {
    /// Every object under `prefix`, fetched into `dir`, and the open multipart uploads. Give
    /// the prefix without a '/': moto checks the signature of one in a listing's prefix
    /// differently from boto3.
    pub fn contents(&self, prefix: &str, dir: &std::path::Path) -> BucketContents {
        let out = Command::new(PathBuf::from(MOTO_VENV).join("bin/python"))
            .args(["-c", FETCH_ALL, &self.endpoint, &self.bucket, prefix])
            .arg(dir)
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .output()
            .expect("running boto3");
        assert!(
            out.status.success(),
            "listing the bucket failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut keys = Vec::new();
        let mut open_uploads = usize::MAX;
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("OBJECT ") {
                keys.push(k.to_string());
            } else if let Some(n) = line.strip_prefix("OPEN-UPLOADS ") {
                open_uploads = n.trim().parse().unwrap();
            }
        }
        BucketContents { keys, open_uploads }
    }

    /// The server's address, for a proxy in front of it.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("moto listens on 127.0.0.1:PORT")
    }
}
