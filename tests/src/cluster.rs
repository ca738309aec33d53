//! The Incus test cluster `cargo xtask incus up` starts (three members on this machine), as
//! its `cluster.json` describes it: the nox.toml declaring it as remote `cluster`, the members'
//! sockets and addresses, and how to stop and start one member's incusd.
//!
//! Under `NOX_IT=1` the cluster must be up (`cargo xtask ci` and `it` bring it up first): a
//! missing cluster fails the test rather than skipping it.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CLUSTER_JSON: &str = "/var/lib/nox-incus-cluster/cluster.json";

/// Tests in one binary share the cluster; one that stops a member holds this for writing.
pub static GATE: RwLock<()> = RwLock::new(());

#[derive(Debug, Clone)]
pub struct Cluster {
    pub doc: Value,
}

impl Cluster {
    /// The cluster, or `None` (with a loud skip notice) outside a live run.
    pub fn get(test: &str) -> Option<Cluster> {
        if !crate::live(test) {
            return None;
        }
        let path = std::env::var("NOX_INCUS_CLUSTER_JSON").unwrap_or_else(|_| CLUSTER_JSON.into());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("the Incus test cluster is not up ({path}: {e}): run `cargo xtask incus up`")
        });
        Some(Cluster {
            doc: serde_json::from_str(&text).expect("cluster.json parses"),
        })
    }

    fn s<'a>(v: &'a Value, what: &str) -> &'a str {
        v.as_str()
            .unwrap_or_else(|| panic!("cluster.json has no {what}"))
    }

    /// The nox.toml that declares the cluster as remote `cluster`, and the test image.
    pub fn nox_toml(&self) -> PathBuf {
        PathBuf::from(Self::s(&self.doc["nox_toml"], "nox_toml"))
    }

    /// A private copy of that nox.toml in `dir`, with `extra` appended (tests must not edit
    /// the shared file).
    pub fn config_in(&self, dir: &Path, extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.nox_toml()).unwrap();
        let path = dir.join("nox-cluster.toml");
        std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
        path
    }

    fn member(&self, n: usize) -> &Value {
        &self.doc["members"][n - 1]
    }

    /// Member `n`'s (1-based) unix socket.
    pub fn socket(&self, n: usize) -> PathBuf {
        PathBuf::from(Self::s(&self.member(n)["unix_socket"], "unix_socket"))
    }

    /// Member `n`'s HTTPS URL.
    pub fn url(&self, n: usize) -> String {
        Self::s(&self.member(n)["url"], "url").to_string()
    }

    /// The cluster certificate's pinned fingerprint.
    pub fn fingerprint(&self) -> String {
        Self::s(&self.doc["fingerprint"], "fingerprint").to_string()
    }

    /// Kills member `n`'s incusd; the returned guard starts it again (now with
    /// [`MemberDown::restart`], or on drop if the test fails first).
    pub fn stop_member(&self, n: usize) -> MemberDown {
        let m = self.member(n).clone();
        let pid_file = Self::s(&m["incusd_pid_file"], "incusd_pid_file").to_string();
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success(), "could not kill member{n}'s incusd {pid}");
        let start = Instant::now();
        while !is_gone(&pid) {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(50));
        }
        MemberDown {
            member: m,
            restarted: false,
        }
    }
}

/// A member whose incusd was killed.
#[derive(Debug)]
pub struct MemberDown {
    member: Value,
    restarted: bool,
}

impl MemberDown {
    /// Starts the member's incusd as cluster.json documents it.
    pub fn restart(&mut self) {
        if self.restarted {
            return;
        }
        self.restarted = true;
        let m = &self.member;
        let s = |v: &Value| v.as_str().unwrap().to_string();
        let argv: Vec<String> = m["incusd_argv"].as_array().unwrap().iter().map(s).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s(&m["stdio_log"]))
            .unwrap();
        let mut cmd = std::process::Command::new("setsid");
        cmd.args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in m["incusd_env"].as_object().unwrap() {
            cmd.env(k, s(v));
        }
        // The daemon outlives the test on purpose (setsid); after the test exits, init reaps it.
        let mut child = cmd.spawn().unwrap();
        std::fs::write(s(&m["incusd_pid_file"]), format!("{}\n", child.id())).unwrap();
        // Until then, a thread reaps it if it dies (see `is_gone`).
        std::thread::spawn(move || child.wait());
    }
}

impl Drop for MemberDown {
    fn drop(&mut self) {
        self.restart();
    }
}

/// Whether a killed process is gone: no /proc entry, or a zombie. A daemon whose parent is
/// still running and does not reap it stays a zombie, with its /proc entry, indefinitely; it
/// no longer runs or holds a socket, which is all a member-down test needs.
fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie")),
    }
}
