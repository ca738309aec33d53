//! `cargo xtask incus up|down|status|stop-member N|start-member N`: a real three-member Incus 6.0
//! cluster on this one machine, for nox-incus's live tests and benchmarks.
//!
//! Each member's incusd runs in its own network and mount namespace (see [`host`]), joined to the
//! others by veth pairs on one host bridge on a private range. There is no NAT and no route out:
//! only the machine's own namespaces are ever addressed. Member 1 is bootstrapped with a preseed
//! (a `dir` pool, a managed bridge with a fixed address and no NAT), members 2 and 3 join with
//! `incus cluster add` tokens. The `incus` CLI drives this set-up: it is the test bed, not nox.
//!
//! Everything lives under [`STATE_DIR`]:
//! - `memberN/incus/`: that member's `INCUS_DIR` (its unix socket is `unix.socket` there);
//! - `memberN/holder.pid`, `memberN/incusd.pid`, `memberN/incusd.out` (incusd's stdio);
//! - `client.crt`, `client.key` (0600): a client certificate the cluster trusts;
//! - `cluster.json`: members, addresses, sockets, pids, and how to restart an incusd;
//! - `nox.toml`: remote `cluster` (HTTPS to member 1, fingerprint pinned) plus the test image.
//!
//! `up` is idempotent: a healthy cluster is left alone, anything else is torn down and rebuilt.
//! `down` leaves nothing: processes, containers, veths, bridge, cgroups, state.

mod host;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::util::{output, set_mode};

/// Where the cluster keeps everything (override with `NOX_INCUS_CLUSTER_DIR`).
pub const STATE_DIR: &str = "/var/lib/nox-incus-cluster";
/// The host bridge joining the members, and the /24 it carries (host .1, member N .1N).
const BRIDGE: &str = "nxincbr0";
const SUBNET: &str = "100.64.73";
/// Each member's managed bridge for its instances: the same fixed subnet in every member's
/// namespace (automatic subnet selection fails here), no NAT, no IPv6.
const INSTANCE_BRIDGE: &str = "incusbr0";
const INSTANCE_BRIDGE_ADDRESS: &str = "10.73.0.1/24";
const POOL: &str = "default";
const MEMBERS: u32 = 3;
const PORT: u16 = 8443;
/// incus-base carries incusd; incus-client the CLI. Never `incus`: it pulls QEMU and an init script.
const PACKAGES: &[&str] = &["incus-base", "incus-client"];

/// `cargo xtask incus up`, for ci and it: the cluster the remote tests run against.
pub fn up() -> Result<()> {
    Cluster::new().up()
}

/// The cluster's description (members, sockets, how to restart one).
pub fn cluster_json() -> PathBuf {
    Cluster::new().cluster_json()
}

/// `cargo xtask incus down`: nothing of the cluster is left.
pub fn down() -> Result<()> {
    Cluster::new().down()
}

pub fn run(args: &[String]) -> Result<()> {
    let member = |args: &[String]| -> Result<u32> {
        let n: u32 = args
            .get(1)
            .and_then(|a| a.parse().ok())
            .context("expected a member number, 1 to 3")?;
        if !(1..=MEMBERS).contains(&n) {
            bail!("member {n} does not exist: members are 1 to {MEMBERS}");
        }
        Ok(n)
    };
    let cluster = Cluster::new();
    match args.first().map(String::as_str) {
        Some("up") => cluster.up(),
        Some("down") => cluster.down(),
        Some("status") => cluster.status(),
        Some("stop-member") => cluster.stop_member(member(args)?),
        Some("start-member") => cluster.start_member(member(args)?),
        _ => bail!(
            "usage: cargo xtask incus up|down|status|stop-member N|start-member N\n\
             (see xtask/src/incus/mod.rs)"
        ),
    }
}

struct Cluster {
    dir: PathBuf,
}

/// One member's names, addresses and files.
struct Member {
    n: u32,
    dir: PathBuf,
}

impl Member {
    fn name(&self) -> String {
        format!("member{}", self.n)
    }
    fn address(&self) -> String {
        format!("{SUBNET}.1{}", self.n)
    }
    fn url(&self) -> String {
        format!("https://{}:{PORT}", self.address())
    }
    fn host_if(&self) -> String {
        format!("nxinc{}", self.n)
    }
    fn incus_dir(&self) -> PathBuf {
        self.dir.join("incus")
    }
    fn socket(&self) -> PathBuf {
        self.incus_dir().join("unix.socket")
    }
    fn holder_pid_file(&self) -> PathBuf {
        self.dir.join("holder.pid")
    }
    fn incusd_pid_file(&self) -> PathBuf {
        self.dir.join("incusd.pid")
    }
    fn daemon_log(&self) -> PathBuf {
        self.incus_dir().join("incus.log")
    }
    fn stdio_log(&self) -> PathBuf {
        self.dir.join("incusd.out")
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cluster {
    fn new() -> Self {
        let dir = std::env::var_os("NOX_INCUS_CLUSTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(STATE_DIR));
        Cluster { dir }
    }

    fn members(&self) -> Vec<Member> {
        (1..=MEMBERS)
            .map(|n| Member {
                n,
                dir: self.dir.join(format!("member{n}")),
            })
            .collect()
    }

    fn member(&self, n: u32) -> Member {
        Member {
            n,
            dir: self.dir.join(format!("member{n}")),
        }
    }

    fn nox_toml(&self) -> PathBuf {
        self.dir.join("nox.toml")
    }
    fn cluster_json(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
    fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The `incus` CLI pointed at one member's unix socket, with its own client config dir so
    /// root's ~/.config/incus is never touched.
    fn incus(&self, member: &Member) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["60", "incus"])
            .env("INCUS_DIR", member.incus_dir())
            .env("INCUS_CONF", self.dir.join("cli"));
        cmd
    }

    fn holder_alive(&self, m: &Member) -> Option<u32> {
        read_pid(&m.holder_pid_file()).filter(|&p| host::is_ours(p, "sleep", &self.dir))
    }

    fn incusd_alive(&self, m: &Member) -> Option<u32> {
        read_pid(&m.incusd_pid_file()).filter(|&p| host::is_ours(p, "incusd", &self.dir))
    }

    /// `cargo xtask incus up`.
    fn up(&self) -> Result<()> {
        let started = Instant::now();
        host::ensure_packages(PACKAGES)?;
        // The test image first: on a fresh machine it takes minutes, and the cluster need not
        // wait idle meanwhile. Cached, it costs about a second.
        let image_config = crate::test_image::build()?;
        let image_toml = fs::read_to_string(&image_config)
            .with_context(|| format!("reading {}", image_config.display()))?;
        let t_cluster = Instant::now();
        match self.health() {
            Ok(()) => {
                eprintln!(
                    "xtask: incus cluster already up and healthy ({MEMBERS} members ONLINE); \
                     checked in {:.1} s",
                    t_cluster.elapsed().as_secs_f64()
                );
                self.refresh_test_image(&image_config, &image_toml)?;
            }
            Err(why) => {
                if self.dir.exists() || host::bridge_exists(BRIDGE) {
                    eprintln!("xtask: incus cluster not healthy ({why:#}): rebuilding it");
                    self.teardown()?;
                }
                self.build(&image_config, &image_toml)?;
                eprintln!(
                    "xtask: incus cluster up in {:.1} s ({MEMBERS} members ONLINE; {:.1} s in all, \
                     packages and test image included)",
                    t_cluster.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        self.print_summary()?;
        println!("{}", self.nox_toml().display());
        Ok(())
    }

    /// Why the cluster is not usable as it stands, if it is not.
    fn health(&self) -> Result<()> {
        for f in [
            self.cluster_json(),
            self.nox_toml(),
            self.client_cert(),
            self.client_key(),
        ] {
            if !f.is_file() {
                bail!("{} is missing", f.display());
            }
        }
        for m in self.members() {
            if self.holder_alive(&m).is_none() {
                bail!("{}'s namespace holder is not running", m.name());
            }
            if self.incusd_alive(&m).is_none() {
                bail!("{}'s incusd is not running", m.name());
            }
        }
        let online = self.online_members(&self.member(1))?;
        if online.len() != MEMBERS as usize {
            bail!("only {online:?} are ONLINE");
        }
        Ok(())
    }

    /// The members `incus cluster list` shows ONLINE, asked through one member.
    fn online_members(&self, via: &Member) -> Result<Vec<String>> {
        let text = output(
            self.incus(via)
                .args(["cluster", "list", "--format", "json"]),
        )?;
        let list: Vec<Value> = serde_json::from_str(&text).context("parsing incus cluster list")?;
        Ok(list
            .iter()
            .filter(|m| m["status"] == "Online")
            .filter_map(|m| m["server_name"].as_str().map(String::from))
            .collect())
    }

    fn build(&self, image_config: &Path, image_toml: &str) -> Result<()> {
        let t = Instant::now();
        let lap = |what: &str| eprintln!("xtask: [{:>5.1} s] {what}", t.elapsed().as_secs_f64());
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // 0711, as Incus keeps /var/lib/incus: an unprivileged container's root must traverse it.
        set_mode(&self.dir, 0o711);
        host::create_bridge(BRIDGE, &format!("{SUBNET}.1/24"))?;
        for m in self.members() {
            fs::create_dir_all(m.incus_dir())?;
            let holder = host::spawn_holder(&self.dir, &m.dir.join("holder.log"))?;
            fs::write(m.holder_pid_file(), format!("{holder}\n"))?;
            host::connect_member(holder, BRIDGE, &m.host_if(), &format!("{}/24", m.address()))?;
            self.start_incusd(&m, holder)?;
        }
        lap("namespaces, veths and incusd started");
        for m in self.members() {
            self.wait_ready(&m)?;
        }
        lap("every incusd answers");
        self.bootstrap(&self.member(1))?;
        lap("member1 bootstrapped");
        let cluster_cert = fs::read_to_string(self.member(1).incus_dir().join("cluster.crt"))
            .context("reading member1's cluster.crt")?;
        for m in self.members().into_iter().skip(1) {
            self.join(&m, &cluster_cert)?;
            lap(&format!("{} joined", m.name()));
        }
        let online = self.online_members(&self.member(1))?;
        if online.len() != MEMBERS as usize {
            bail!("after the joins only {online:?} are ONLINE");
        }
        self.make_client_cert()?;
        output(self.incus(&self.member(1)).args([
            "config",
            "trust",
            "add-certificate",
            &self.client_cert().display().to_string(),
            "--name",
            "nox-xtask-incus",
        ]))
        .context("trusting the client certificate")?;
        lap("client certificate made and trusted");
        let fingerprint = cert_fingerprint(&self.member(1).incus_dir().join("cluster.crt"))?;
        self.write_cluster_json(&fingerprint, image_config)?;
        self.write_nox_toml(&fingerprint, image_config, image_toml)?;
        Ok(())
    }

    fn start_incusd(&self, m: &Member, holder: u32) -> Result<u32> {
        let pid = host::spawn_incusd(
            &self.dir,
            holder,
            &m.incus_dir(),
            &m.daemon_log(),
            &m.stdio_log(),
        )?;
        fs::write(m.incusd_pid_file(), format!("{pid}\n"))?;
        Ok(pid)
    }

    fn wait_ready(&self, m: &Member) -> Result<()> {
        output(self.incus(m).args(["admin", "waitready", "--timeout=60"])).with_context(|| {
            format!(
                "{}'s incusd did not become ready; its log: {}",
                m.name(),
                m.stdio_log().display()
            )
        })?;
        Ok(())
    }

    fn bootstrap(&self, m: &Member) -> Result<()> {
        let preseed = json!({
            "config": {
                "core.https_address": format!("{}:{PORT}", m.address()),
                // Nothing may be fetched from outside: no image auto-updates.
                "images.auto_update_interval": "0",
            },
            "storage_pools": [{ "name": POOL, "driver": "dir" }],
            "networks": [{
                "name": INSTANCE_BRIDGE,
                "type": "bridge",
                "config": {
                    "ipv4.address": INSTANCE_BRIDGE_ADDRESS,
                    "ipv4.nat": "false",
                    "ipv6.address": "none",
                },
            }],
            "profiles": [{
                "name": "default",
                "devices": {
                    "root": { "type": "disk", "path": "/", "pool": POOL },
                    "eth0": { "type": "nic", "name": "eth0", "network": INSTANCE_BRIDGE },
                },
            }],
            "cluster": { "server_name": m.name(), "enabled": true },
        });
        self.preseed(m, &preseed)
            .with_context(|| format!("bootstrapping {}", m.name()))
    }

    fn join(&self, m: &Member, cluster_cert: &str) -> Result<()> {
        let first = self.member(1);
        let token = output(
            self.incus(&first)
                .args(["cluster", "add", &m.name(), "--quiet"]),
        )?;
        let preseed = json!({
            "cluster": {
                "enabled": true,
                "server_name": m.name(),
                "server_address": format!("{}:{PORT}", m.address()),
                "cluster_address": format!("{}:{PORT}", first.address()),
                "cluster_certificate": cluster_cert,
                "cluster_token": token.trim(),
                "member_config": [
                    { "entity": "storage-pool", "name": POOL, "key": "source", "value": "" },
                ],
            },
        });
        self.preseed(m, &preseed)
            .with_context(|| format!("joining {}", m.name()))
    }

    /// `incus admin init --preseed`, fed JSON (which is YAML).
    fn preseed(&self, m: &Member, preseed: &Value) -> Result<()> {
        let path = m.dir.join("preseed.json");
        fs::write(&path, serde_json::to_string_pretty(preseed)?)?;
        set_mode(&path, 0o600);
        output(
            self.incus(m)
                .args(["admin", "init", "--preseed"])
                .stdin(fs::File::open(&path)?),
        )?;
        Ok(())
    }

    /// A client certificate and key (ECDSA P-384, as Incus makes its own), key 0600.
    fn make_client_cert(&self) -> Result<()> {
        let key = self.client_key();
        let _ = fs::remove_file(&key);
        output(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:secp384r1",
                    "-nodes",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=nox-xtask-incus",
                    "-addext",
                    "extendedKeyUsage=clientAuth",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(self.client_cert()),
        )
        .context("making the client certificate with openssl")?;
        set_mode(&key, 0o600);
        Ok(())
    }

    fn write_cluster_json(&self, fingerprint: &str, image_config: &Path) -> Result<()> {
        let members: Vec<Value> = self
            .members()
            .iter()
            .map(|m| {
                let holder = read_pid(&m.holder_pid_file()).unwrap_or(0);
                json!({
                    "name": m.name(),
                    "address": m.address(),
                    "url": m.url(),
                    "unix_socket": m.socket(),
                    "incus_dir": m.incus_dir(),
                    "holder_pid": holder,
                    "incusd_pid": read_pid(&m.incusd_pid_file()).unwrap_or(0),
                    "incusd_pid_file": m.incusd_pid_file(),
                    "log": m.daemon_log(),
                    "stdio_log": m.stdio_log(),
                    "stop": ["cargo", "xtask", "incus", "stop-member", m.n.to_string()],
                    "start": ["cargo", "xtask", "incus", "start-member", m.n.to_string()],
                    "incusd_argv": host::incusd_argv(holder, &m.daemon_log()),
                    "incusd_env": self.incusd_env_of(m),
                })
            })
            .collect();
        let doc = json!({
            "comment": "Written by `cargo xtask incus up`. incusd_pid is the pid at `up`; the \
                        pid file is kept current by stop-member/start-member. To restart an \
                        incusd by hand, run incusd_argv with incusd_env (stdio to a file) and \
                        write its pid to incusd_pid_file; then `incus admin waitready`.",
            "state_dir": self.dir,
            "bridge": BRIDGE,
            "host_address": format!("{SUBNET}.1"),
            "instance_bridge": INSTANCE_BRIDGE,
            "storage_pool": POOL,
            "project": "default",
            "fingerprint": fingerprint,
            "client_cert": self.client_cert(),
            "client_key": self.client_key(),
            "nox_toml": self.nox_toml(),
            "test_image_config": image_config,
            "members": members,
        });
        fs::write(
            self.cluster_json(),
            serde_json::to_string_pretty(&doc)? + "\n",
        )?;
        Ok(())
    }

    /// nox.toml is written again on every `up` (a rebuilt test image has a new path, and
    /// this xtask may write it differently now), leaving the cluster alone.
    fn refresh_test_image(&self, image_config: &Path, image_toml: &str) -> Result<()> {
        let mut doc: Value = serde_json::from_str(&fs::read_to_string(self.cluster_json())?)?;
        let fingerprint = doc["fingerprint"]
            .as_str()
            .context("cluster.json has no fingerprint")?
            .to_string();
        self.write_nox_toml(&fingerprint, image_config, image_toml)?;
        doc["test_image_config"] = json!(image_config);
        fs::write(
            self.cluster_json(),
            serde_json::to_string_pretty(&doc)? + "\n",
        )?;
        Ok(())
    }

    fn write_nox_toml(
        &self,
        fingerprint: &str,
        image_config: &Path,
        image_toml: &str,
    ) -> Result<()> {
        let mut text = format!(
            "# Generated by `cargo xtask incus up`: a three-member Incus {version} cluster on this\n\
             # machine, each member in its own network namespace on {BRIDGE} ({SUBNET}.0/24).\n\
             # Details (pids, sockets, how to restart a member): {json}\n\
             #\n",
            version = "6.0",
            json = self.cluster_json().display(),
        );
        for m in self.members() {
            text.push_str(&format!(
                "# {name}: {url}  unix://{socket}\n",
                name = m.name(),
                url = m.url(),
                socket = m.socket().display(),
            ));
        }
        text.push_str(&format!(
            "\n[remotes.cluster]\n\
             driver = \"incus\"\n\
             url = \"{url}\"\n\
             project = \"default\"\n\
             client_cert = \"{cert}\"\n\
             client_key = \"{key}\"\n\
             fingerprint = \"{fingerprint}\"\n\
             # Each member's own managed bridge stands in for a LAN bridge in the tests.\n\
             privileged_network = \"{INSTANCE_BRIDGE}\"\n\n",
            url = self.member(1).url(),
            cert = self.client_cert().display(),
            key = self.client_key().display(),
        ));
        text.push_str(&format!(
            "# The test image, from {}:\n",
            image_config.display()
        ));
        text.push_str(image_toml);
        fs::write(self.nox_toml(), text)?;
        Ok(())
    }

    fn print_summary(&self) -> Result<()> {
        let json = fs::read_to_string(self.cluster_json())?;
        let doc: Value = serde_json::from_str(&json)?;
        for m in doc["members"].as_array().into_iter().flatten() {
            eprintln!(
                "xtask:   {}  {}  unix://{}",
                m["name"].as_str().unwrap_or_default(),
                m["url"].as_str().unwrap_or_default(),
                m["unix_socket"].as_str().unwrap_or_default(),
            );
        }
        eprintln!("xtask:   details: {}", self.cluster_json().display());
        Ok(())
    }

    /// `cargo xtask incus down`.
    fn down(&self) -> Result<()> {
        let started = Instant::now();
        if !self.dir.exists() && !host::bridge_exists(BRIDGE) {
            eprintln!("xtask: no incus cluster here: nothing to do");
            return Ok(());
        }
        self.teardown()?;
        eprintln!(
            "xtask: incus cluster down in {:.1} s: nothing left",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Removes everything the cluster made, from whatever state it is in.
    fn teardown(&self) -> Result<()> {
        // Container names, for their cgroups: liblxc removes those on a clean stop only.
        let mut containers = Vec::new();
        for m in self.members() {
            if let Ok(dir) = fs::read_dir(m.incus_dir().join("containers")) {
                containers.extend(dir.filter_map(|e| e.ok()?.file_name().into_string().ok()));
            }
        }
        // No graceful stop: with the daemons and every container killed at once, nothing is
        // left to wait for, and a half-dead cluster cannot hang the teardown.
        let t = Instant::now();
        let killed = host::kill_cluster_processes(&self.dir)?;
        eprintln!(
            "xtask: killed {killed} cluster processes (incusd, holders, containers) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        host::remove_container_cgroups(&containers);
        for m in self.members() {
            host::delete_link(&m.host_if())?;
        }
        host::delete_link(BRIDGE)?;
        if self.dir.exists() {
            // Every mount Incus made lived in a member's private mount namespace, gone with its
            // last process; still, never remove_dir_all through a mount.
            if let Some(mount) = fs::read_to_string("/proc/self/mountinfo")?
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .find(|p| Path::new(p).starts_with(&self.dir))
            {
                bail!(
                    "{mount} is still mounted; not removing {}",
                    self.dir.display()
                );
            }
            let t = Instant::now();
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
            eprintln!(
                "xtask: removed {} in {:.1} s",
                self.dir.display(),
                t.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// `cargo xtask incus status`: what `up` would find.
    fn status(&self) -> Result<()> {
        match self.health() {
            Ok(()) => {
                self.print_summary()?;
                println!("up");
                Ok(())
            }
            Err(why) => bail!("the incus cluster is not up: {why:#}"),
        }
    }

    /// `cargo xtask incus stop-member N`: stops that member's incusd (SIGTERM, then SIGKILL after
    /// 10 s). Its namespace and its containers stay, as when a real daemon dies.
    fn stop_member(&self, n: u32) -> Result<()> {
        let m = self.member(n);
        match self.incusd_alive(&m) {
            Some(pid) => {
                host::terminate(pid, Duration::from_secs(10));
                eprintln!("xtask: stopped {}'s incusd (pid {pid})", m.name());
            }
            None => eprintln!("xtask: {}'s incusd is not running", m.name()),
        }
        Ok(())
    }

    /// `cargo xtask incus start-member N`: starts that member's incusd again and waits for it.
    fn start_member(&self, n: u32) -> Result<()> {
        let m = self.member(n);
        if let Some(pid) = self.incusd_alive(&m) {
            eprintln!(
                "xtask: {}'s incusd is already running (pid {pid})",
                m.name()
            );
            return Ok(());
        }
        let holder = self.holder_alive(&m).with_context(|| {
            format!(
                "{}'s namespace holder is gone: run `cargo xtask incus up` to rebuild",
                m.name()
            )
        })?;
        let t = Instant::now();
        let pid = self.start_incusd(&m, holder)?;
        self.wait_ready(&m)?;
        eprintln!(
            "xtask: started {}'s incusd (pid {pid}), ready in {:.1} s",
            m.name(),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Cluster {
    fn incusd_env_of(&self, m: &Member) -> Value {
        let mut env = serde_json::Map::new();
        env.insert("INCUS_DIR".into(), json!(m.incus_dir()));
        env.insert(host::MARKER_ENV.into(), json!(self.dir));
        Value::Object(env)
    }
}

/// The SHA-256 fingerprint (lowercase hex, as Incus prints it) of a PEM certificate's DER.
fn cert_fingerprint(pem: &Path) -> Result<String> {
    let out = output(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(pem),
    )?;
    let hex = out
        .trim()
        .split_once('=')
        .map(|(_, h)| h.replace(':', "").to_lowercase())
        .context("unexpected openssl fingerprint output")?;
    if hex.len() != 64 {
        bail!("unexpected openssl fingerprint output: {out}");
    }
    Ok(hex)
}
