//! The host side of the test cluster: the bridge, each member's namespaces and veth, and
//! finding (and killing) every process that belongs to the cluster.
//!
//! A member's namespaces are held by a `sleep infinity` started with `unshare -m -n`, set up as
//! Incus's own test suite does (test/includes/clustering.sh): a fresh sysfs, so
//! /sys/class/net shows the member's own devices, with the host's cgroup mounts moved back under
//! it, and a fresh /proc. `ip netns exec` and `nsenter --net` alone do not work here (see
//! /work/shared/docs/host-notes.md, "Incus here").
//!
//! Every process the cluster starts carries [`MARKER_ENV`] in its environment (incusd passes its
//! environment on to the helpers and LXC monitors it spawns). `down` finds the cluster by that
//! marker, by the namespaces those processes live in, and by descent from them: never by name.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{output, sh};

/// Set on every process the cluster starts, with the state directory as its value.
pub const MARKER_ENV: &str = "NOX_INCUS_CLUSTER";

/// What the namespace holder runs inside `unshare -m -n`. `unshare` makes the new mount
/// namespace private, so nothing mounted here (or by incusd later) propagates to the host.
const HOLDER_SCRIPT: &str = "set -e
mount --move /sys /mnt
mount -t sysfs sysfs /sys
mount --move /mnt/fs/cgroup /sys/fs/cgroup
umount -l /mnt
umount -l /proc
mount -t proc proc /proc
exec sleep infinity
";

pub fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Creates the host bridge with `address` (CIDR), unless it exists.
pub fn create_bridge(name: &str, cidr: &str) -> Result<()> {
    if !bridge_exists(name) {
        quiet(Command::new("ip").args(["link", "add", name, "type", "bridge"]))?;
        quiet(Command::new("ip").args(["addr", "add", cidr, "dev", name]))?;
    }
    quiet(Command::new("ip").args(["link", "set", name, "up"]))
}

/// Deletes a host link (a bridge, or a veth together with its peer), if it exists.
pub fn delete_link(name: &str) -> Result<()> {
    if bridge_exists(name) {
        quiet(Command::new("ip").args(["link", "del", name]))?;
    }
    Ok(())
}

/// Starts the process that holds a member's network and mount namespaces; returns its pid once
/// the namespaces are set up (the script has exec'd `sleep`).
pub fn spawn_holder(state_dir: &Path, log: &Path) -> Result<u32> {
    let log_file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // setsid: the holder outlives xtask and its terminal. It does not fork here (our child is
    // not a process group leader), so the pid we get is the holder's.
    let child = Command::new("setsid")
        .args(["unshare", "-m", "-n", "/bin/sh", "-c", HOLDER_SCRIPT])
        .env(MARKER_ENV, state_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting the namespace holder (setsid unshare -m -n)")?;
    let pid = child.id();
    reap_in_background(child);
    let started = Instant::now();
    loop {
        match comm(pid).as_deref() {
            Some("sleep") => return Ok(pid),
            None => bail!(
                "the namespace holder exited while setting up its mounts: {}",
                fs::read_to_string(log).unwrap_or_default().trim()
            ),
            _ if started.elapsed() > Duration::from_secs(10) => {
                bail!("the namespace holder (pid {pid}) did not finish its mounts in 10 s")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Joins a member's namespace to the host bridge with a veth pair: `host_if` stays on the host,
/// its peer becomes `eth0` with `cidr` inside. No default route: the member reaches only the
/// bridge's subnet.
pub fn connect_member(holder: u32, bridge: &str, host_if: &str, cidr: &str) -> Result<()> {
    let peer = format!("{host_if}p");
    let pid = holder.to_string();
    quiet(Command::new("ip").args([
        "link", "add", host_if, "type", "veth", "peer", "name", &peer,
    ]))?;
    quiet(Command::new("ip").args(["link", "set", &peer, "netns", &pid]))?;
    quiet(Command::new("ip").args(["link", "set", host_if, "master", bridge, "up"]))?;
    let in_ns = |args: &[&str]| {
        quiet(
            Command::new("nsenter")
                .args(["-n", "-m", "-t", &pid, "ip"])
                .args(args),
        )
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&["link", "set", &peer, "name", "eth0"])?;
    in_ns(&["addr", "add", cidr, "dev", "eth0"])?;
    in_ns(&["link", "set", "eth0", "up"])
}

/// The command that starts a member's incusd inside its holder's namespaces, as argv.
pub fn incusd_argv(holder: u32, log: &Path) -> Vec<String> {
    vec![
        "nsenter".into(),
        "-n".into(),
        "-m".into(),
        "-t".into(),
        holder.to_string(),
        "/usr/libexec/incus/incusd".into(),
        "--logfile".into(),
        log.display().to_string(),
    ]
}

/// Starts incusd in the holder's namespaces with its own `INCUS_DIR`; returns its pid.
pub fn spawn_incusd(
    state_dir: &Path,
    holder: u32,
    incus_dir: &Path,
    daemon_log: &Path,
    stdio_log: &Path,
) -> Result<u32> {
    let argv = incusd_argv(holder, daemon_log);
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stdio_log)
        .with_context(|| format!("opening {}", stdio_log.display()))?;
    // nsenter enters no pid namespace, so it execs incusd without forking: same pid.
    let child = Command::new("setsid")
        .args(&argv)
        .env("INCUS_DIR", incus_dir)
        .env(MARKER_ENV, state_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting incusd")?;
    let pid = child.id();
    reap_in_background(child);
    Ok(pid)
}

/// The daemons are our children for as long as xtask runs (`ci`, `it` and `bench` bring the
/// cluster up and keep going). A member killed by a failure test would stay a zombie until
/// xtask exits, and a zombie still has its /proc entry, so whoever waits for it to be gone
/// waits forever. A thread per daemon reaps it the moment it dies; once xtask exits, init does.
fn reap_in_background(mut child: std::process::Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// The process's command name, or None when it does not exist (or is a zombie).
pub fn comm(pid: u32) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    if status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains("zombie"))
    {
        return None;
    }
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// True when `pid` runs `name` and carries the marker of this state directory.
pub fn is_ours(pid: u32, name: &str, state_dir: &Path) -> bool {
    comm(pid).as_deref() == Some(name) && has_marker(pid, state_dir)
}

fn has_marker(pid: u32, state_dir: &Path) -> bool {
    let want = format!("{MARKER_ENV}={}", state_dir.display());
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        .unwrap_or(false)
}

fn ns_id(pid: u32, kind: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.display().to_string())
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn ppid(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Every process of the cluster: those carrying the marker, every process in their mount or
/// network namespaces (the host's excepted), and all their descendants (containers run in
/// namespaces of their own, below an LXC monitor that lives in the member's).
pub fn cluster_processes(state_dir: &Path) -> BTreeSet<u32> {
    let me = std::process::id();
    let host_ns: BTreeSet<String> = [1, me]
        .iter()
        .flat_map(|&p| [ns_id(p, "mnt"), ns_id(p, "net")])
        .flatten()
        .collect();
    let pids = all_pids();
    let mut found: BTreeSet<u32> = pids
        .iter()
        .copied()
        .filter(|&p| p != me && has_marker(p, state_dir))
        .collect();
    let namespaces: BTreeSet<String> = found
        .iter()
        .flat_map(|&p| [ns_id(p, "mnt"), ns_id(p, "net")])
        .flatten()
        .filter(|ns| !host_ns.contains(ns))
        .collect();
    for &p in &pids {
        if p != me
            && [ns_id(p, "mnt"), ns_id(p, "net")]
                .into_iter()
                .flatten()
                .any(|ns| namespaces.contains(&ns))
        {
            found.insert(p);
        }
    }
    let parents: HashMap<u32, u32> = pids.iter().filter_map(|&p| Some((p, ppid(p)?))).collect();
    loop {
        let more: Vec<u32> = parents
            .iter()
            .filter(|(child, parent)| found.contains(parent) && !found.contains(child))
            .map(|(&child, _)| child)
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found.remove(&me);
    found
}

/// Stops every cluster process, then kills them all, so that none forks or respawns in between.
/// Returns how many were killed.
pub fn kill_cluster_processes(state_dir: &Path) -> Result<usize> {
    let mut victims = BTreeSet::new();
    // Freeze first (SIGSTOP), re-scan for anything forked meanwhile, then SIGKILL everything.
    for _ in 0..3 {
        let found = cluster_processes(state_dir);
        let new: Vec<u32> = found.difference(&victims).copied().collect();
        if new.is_empty() {
            break;
        }
        signal("STOP", &new);
        victims.extend(new);
    }
    signal("KILL", &victims.iter().copied().collect::<Vec<_>>());
    let started = Instant::now();
    while victims.iter().any(|&p| comm(p).is_some()) {
        if started.elapsed() > Duration::from_secs(10) {
            let left: Vec<_> = victims.iter().filter(|&&p| comm(p).is_some()).collect();
            bail!("processes still alive 10 s after SIGKILL: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever was not reachable before (an orphan reparented while we scanned).
    let rest: Vec<u32> = cluster_processes(state_dir).into_iter().collect();
    if !rest.is_empty() {
        signal("KILL", &rest);
        victims.extend(rest);
    }
    Ok(victims.len())
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    // xtask keeps its dependencies few: procps' kill rather than libc. A process may already be
    // gone, so the exit status is not an error.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGTERM to `pid`, and SIGKILL if it is still there after `grace`.
pub fn terminate(pid: u32, grace: Duration) {
    signal("TERM", &[pid]);
    let started = Instant::now();
    while comm(pid).is_some() {
        if started.elapsed() > grace {
            signal("KILL", &[pid]);
        }
        if started.elapsed() > grace + Duration::from_secs(5) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the cgroups LXC made for the containers `names` (`lxc.payload.NAME`,
/// `lxc.monitor.NAME`) in every controller, once their processes are gone. Liblxc removes them
/// on a clean stop; after a SIGKILL they stay behind, empty.
pub fn remove_container_cgroups(names: &[String]) {
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let controllers: Vec<_> = controllers.filter_map(|e| Some(e.ok()?.path())).collect();
    for name in names {
        for prefix in ["lxc.payload", "lxc.monitor"] {
            for controller in &controllers {
                let dir = controller.join(format!("{prefix}.{name}"));
                // A tree with a process in it is not a leftover (a same-named container of
                // someone else's, say): leave it whole.
                if dir.is_dir() && !cgroup_tree_has_processes(&dir) {
                    remove_cgroup_tree(&dir);
                }
            }
        }
    }
}

fn cgroup_tree_has_processes(dir: &Path) -> bool {
    let here = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|p| !p.trim().is_empty())
        .unwrap_or(false);
    here || fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_type().is_ok_and(|t| t.is_dir()) && cgroup_tree_has_processes(&e.path())
        })
    })
}

/// rmdir, deepest first: cgroup directories cannot be removed with their children.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Runs a command quietly, failing with its stderr.
fn quiet(cmd: &mut Command) -> Result<()> {
    output(cmd).map(drop)
}

/// Installs `packages` from bookworm-backports when missing. The backports source is added by
/// `cargo xtask setup`, which runs first when a package is missing (it is idempotent).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} from bookworm-backports",
        missing.join(" ")
    );
    crate::setup::run()?;
    // apt's chatter goes to stderr: stdout carries only the nox.toml path.
    let apt = |args: &[&str]| {
        sh(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=900"])
            .args(args)
            .stdout(std::io::stderr()))
    };
    apt(&["update"])?;
    // The postinst cannot start the daemon here (no init system; policy-rc.d refuses): expected,
    // and harmless, since each member's incusd is started by hand.
    let mut args = vec![
        "install",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
    ];
    args.extend(&missing);
    apt(&args)
}
