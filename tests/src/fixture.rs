//! The live-test fixture: unique names, a private state dir, cleanup on drop (panics
//! included), and a sweep of what killed runs left behind.
//!
//! Ownership is recorded *in* each resource, never guessed from its name:
//! - a VM carries the label `nox.test.owner` in nox's metadata record (`<metadata>`);
//! - a container lives in the fixture's own lxcpath and has an owner file in its directory;
//! - state dirs are named after their owner.
//!
//! An owner is `PID-STARTTIME` of the test process. The sweep removes only resources whose
//! owner process is gone, so concurrent test runs and a user's own machines are never touched.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use nox_libvirt::domain::{record_from_metadata, METADATA_NS};
use nox_lxc::liblxc::Container;

/// Where live tests keep everything they make. World-traversable (0711) because QEMU runs as
/// libvirt-qemu and must reach the disks below it.
pub const STATE_ROOT: &str = "/var/lib/nox-it";
/// The label that marks a VM as a live test's.
pub const OWNER_LABEL: &str = "nox.test.owner";
/// The file that marks a container as a live test's.
const CONTAINER_OWNER_FILE: &str = "nox-test-owner";

/// This process's owner token.
pub fn owner() -> String {
    let pid = std::process::id();
    format!("{pid}-{}", start_time(pid).unwrap_or_default())
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. With the
/// pid it identifies a process even across pid reuse.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing paren are plain.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True while the process that owns `token` runs.
pub fn owner_alive(token: &str) -> bool {
    let Some((pid, start)) = token.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// The VM shape vm.rs, backup.rs, clones.rs and crash.rs create (passt networking, so SSH is
/// reachable on 127.0.0.1): one template serves them all in a run.
pub const USER_SHAPE: &[&str] = &[
    "--network",
    "user",
    "--cpus",
    "1",
    "--memory",
    "1G",
    "--disk",
    "4G",
];

/// The NAT-network VM shape clones.rs, forward.rs, scripts.rs and crash.rs create: one
/// template on libvirt's `default` network serves them all in a run.
pub const NAT_SHAPE: &[&str] = &[
    "--network",
    "default",
    "--cpus",
    "2",
    "--memory",
    "2G",
    "--disk",
    "6G",
];

/// The VM templates every live test shares (`[vm] templates_dir`): a template is a cold boot,
/// made once per shape and run. `cargo xtask ci` empties it first, so each CI run builds its own.
pub fn templates_dir() -> PathBuf {
    Path::new(STATE_ROOT).join("templates")
}

/// The lxcpath live tests create containers in.
pub fn lxcpath() -> PathBuf {
    Path::new(STATE_ROOT).join("lxc")
}

#[derive(Debug)]
enum Resource {
    /// A libvirt domain (transient or defined) by name.
    Domain(String),
    /// An LXC container in the fixture's lxcpath.
    Container(String),
}

/// Per-test resources. Everything registered is removed on drop.
#[derive(Debug)]
pub struct Fixture {
    pub owner: String,
    /// This test's private directory, removed on drop.
    pub dir: PathBuf,
    uri: String,
    resources: Mutex<Vec<Resource>>,
}

impl Fixture {
    /// Sweeps leftovers of dead runs (once per process), then makes a private state dir.
    pub fn new(test: &str) -> Fixture {
        static SWEEP: Once = Once::new();
        let uri = "qemu:///system".to_string();
        SWEEP.call_once(|| sweep(&uri));
        let owner = owner();
        let dir = Path::new(STATE_ROOT).join(&owner).join(test);
        std::fs::create_dir_all(&dir).expect("creating the test state dir");
        set_mode(Path::new(STATE_ROOT), 0o711);
        set_mode(&Path::new(STATE_ROOT).join(&owner), 0o711);
        set_mode(&dir, 0o711);
        std::fs::create_dir_all(lxcpath()).expect("creating the test lxcpath");
        Fixture {
            owner,
            dir,
            uri,
            resources: Mutex::new(Vec::new()),
        }
    }

    /// A name no other test or run uses: `it-` + a short hash of (owner, test, counter).
    pub fn unique_name(&self, hint: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut h: u64 = 0xcbf29ce484222325;
        for b in format!("{}/{}/{hint}/{n}", self.owner, self.dir.display()).bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        format!("it-{hint}-{:08x}", h as u32)
    }

    /// This test's `[state] dir`: instance locks and intent records.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Writes a nox config for this test: the test image's `[images]`, and every storage and
    /// data dir inside this test's private dir. Returns its path, for `NOX_CONFIG`.
    /// Containers share the fixture's lxcpath, so the image is unpacked once per run;
    /// `lxc_extra` adds keys to `[lxc]`.
    pub fn nox_config(&self, image: &crate::image::TestImage, extra: &str) -> PathBuf {
        self.nox_config_lxc(image, "", extra)
    }

    pub fn nox_config_lxc(
        &self,
        image: &crate::image::TestImage,
        lxc_extra: &str,
        extra: &str,
    ) -> PathBuf {
        let images = std::fs::read_to_string(&image.config).expect("reading the image's nox.toml");
        let path = self.dir.join("nox.toml");
        let text = format!(
            "{images}\n[vm]\nstorage_dir = \"{}\"\ntemplates_dir = \"{}\"\n\n[state]\ndir = \"{}\"\n\n[lxc]\nlxcpath = \"{}\"\n{lxc_extra}\n\n{extra}\n",
            self.dir.join("vm").display(),
            templates_dir().display(),
            self.state_dir().display(),
            lxcpath().display()
        );
        std::fs::write(&path, text).expect("writing the test config");
        path
    }

    /// A copy of the config at `config` whose `[vm] templates_dir` is this test's own, for a
    /// test that must build a template itself, or must not see the run's shared ones.
    pub fn with_own_templates(&self, config: &Path) -> PathBuf {
        let path = config.with_extension("own-templates.toml");
        let text = std::fs::read_to_string(config).expect("reading the test config");
        let shared = format!("templates_dir = \"{}\"", templates_dir().display());
        assert!(
            text.contains(&shared),
            "{} has no shared templates_dir",
            config.display()
        );
        let own = format!(
            "templates_dir = \"{}\"",
            self.dir.join("templates").display()
        );
        std::fs::write(&path, text.replace(&shared, &own)).expect("writing the test config");
        path
    }

    /// `nox` with this test's config and its own home and data dirs.
    pub fn nox(&self, config: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(crate::nox_bin());
        let home = self.dir.join("home");
        let _ = std::fs::create_dir_all(&home);
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("NOX_CONFIG", config);
        cmd
    }

    /// The metadata record a test VM carries, marking it as ours.
    pub fn vm_record(&self) -> String {
        serde_json::json!({ "labels": { OWNER_LABEL: self.owner } }).to_string()
    }

    /// Registers a domain for removal on drop. Register *before* creating it.
    pub fn own_domain(&self, name: &str) {
        self.resources
            .lock()
            .unwrap()
            .push(Resource::Domain(name.into()));
    }

    /// Creates an unprivileged container `name` from the minimal test image (registered for
    /// removal first), failing the test if nox fails.
    pub fn create_container(&self, config: &Path, name: &str) {
        self.own_container(name);
        crate::ok(
            self.nox(config)
                .args([
                    "create",
                    name,
                    "--backend",
                    "lxc",
                    "--image",
                    "debian-12-test-minimal",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("nox runs"),
        );
    }

    /// Registers a container for removal on drop and marks it as ours, before liblxc creates
    /// anything: a run killed mid-create still leaves a marked directory for the sweep.
    pub fn own_container(&self, name: &str) {
        self.resources
            .lock()
            .unwrap()
            .push(Resource::Container(name.into()));
        let dir = lxcpath().join(name);
        std::fs::create_dir_all(&dir).expect("creating the container dir");
        std::fs::write(dir.join(CONTAINER_OWNER_FILE), &self.owner)
            .expect("writing the container owner mark");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let resources =
            std::mem::take(&mut *self.resources.lock().unwrap_or_else(|e| e.into_inner()));
        for r in resources.into_iter().rev() {
            match r {
                Resource::Domain(name) => remove_domain(&self.uri, &name),
                Resource::Container(name) => remove_container(&name),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let owner_dir = Path::new(STATE_ROOT).join(&self.owner);
        let _ = std::fs::remove_dir(owner_dir); // only if no other test of this run is using it
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

fn remove_domain(uri: &str, name: &str) {
    virt::error::clear_error_callback();
    let Ok(conn) = virt::connect::Connect::open(Some(uri)) else {
        return;
    };
    if let Ok(dom) = conn.lookup_domain_by_name(name) {
        if dom.is_active().unwrap_or(false) {
            let _ = dom.destroy();
        }
        if dom.is_persistent().unwrap_or(false) {
            // NVRAM, managed-save state, backup checkpoints and snapshots too, so nothing of
            // the test remains in libvirt (a domain with checkpoints or snapshots refuses a
            // plain undefine).
            let _ = dom.undefine_flags(
                virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM
                    | virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | virt::sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                    | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
            );
        }
    }
}

fn remove_container(name: &str) {
    let Ok(c) = Container::new(name, &lxcpath()) else {
        return;
    };
    if c.is_running() {
        let _ = c.stop();
    }
    if c.is_defined() {
        let _ = c.destroy();
    }
    // A create that failed midway can leave a directory liblxc does not call defined.
    let _ = std::fs::remove_dir_all(lxcpath().join(name));
}

/// A template's domain (`nox.template.KEY.DIR`) runs only while a nox builds it, holding the
/// template's lock. One in the tests' templates dir whose lock is free was left by a killed
/// build: it would run, unseen, until a build of the same shape.
fn sweep_template_build(uri: &str, dom: &virt::domain::Domain) {
    use std::os::fd::AsRawFd;
    // `nox.template.KEY.DIR` (DIR: a hash of the templates dir it builds into).
    let Some((name, key)) = dom.name().ok().and_then(|n| {
        let key = n
            .strip_prefix("nox.template.")?
            .split('.')
            .next()?
            .to_string();
        Some((n, key))
    }) else {
        return;
    };
    let lock = templates_dir().join(format!("{key}.lock"));
    let in_tests = dom
        .xml_desc(0)
        .map(|x| x.contains(&*templates_dir().to_string_lossy()))
        .unwrap_or(false);
    let Ok(file) = std::fs::File::open(&lock) else {
        return;
    };
    // SAFETY: flock on a file this function owns; the lock goes with the file.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if in_tests && free {
        eprintln!("fixture: sweeping template build {name} left by a killed run");
        remove_domain(uri, &name);
    }
}

/// Removes every test resource whose owner process is gone.
pub fn sweep(uri: &str) {
    virt::error::clear_error_callback();
    if let Ok(conn) = virt::connect::Connect::open(Some(uri)) {
        let domains = conn.list_all_domains(0).unwrap_or_default();
        for dom in domains {
            sweep_template_build(uri, &dom);
            // VIR_DOMAIN_METADATA_ELEMENT = 2; only domains with nox's record answer.
            let Ok(xml) = dom.metadata(2, Some(METADATA_NS), 0) else {
                continue;
            };
            let Some(json) = record_from_metadata(&xml) else {
                continue;
            };
            // A test VM carries the owner label, or was made by `nox` under a test's private
            // storage dir, which is named after its owner.
            let record = serde_json::from_str::<serde_json::Value>(&json).ok();
            let owner = record.as_ref().and_then(|v| {
                v["labels"][OWNER_LABEL]
                    .as_str()
                    .map(String::from)
                    .or_else(|| {
                        v["dir"]
                            .as_str()
                            .and_then(|d| d.strip_prefix(STATE_ROOT))
                            .and_then(|rest| rest.trim_start_matches('/').split('/').next())
                            .filter(|o| o.contains('-'))
                            .map(String::from)
                    })
            });
            if let (Some(owner), Ok(name)) = (owner, dom.name()) {
                if !owner_alive(&owner) {
                    eprintln!("fixture: sweeping domain {name} left by dead test run {owner}");
                    remove_domain(uri, &name);
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(lxcpath()) {
        for e in entries.flatten() {
            let Ok(owner) = std::fs::read_to_string(e.path().join(CONTAINER_OWNER_FILE)) else {
                continue;
            };
            if !owner_alive(owner.trim()) {
                let name = e.file_name().to_string_lossy().into_owned();
                eprintln!("fixture: sweeping container {name} left by dead test run {owner}");
                remove_container(&name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(STATE_ROOT) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains('-')
                && name
                    .split('-')
                    .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
                && !owner_alive(&name)
            {
                // A loop filesystem a killed test left mounted there goes first, so the
                // removal below never reaches into it and its loop device is freed.
                for m in crate::loopfs::mounts_under(&e.path()) {
                    eprintln!(
                        "fixture: unmounting {} left by dead test run {name}",
                        m.display()
                    );
                    crate::loopfs::unmount(&m);
                }
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_owner_is_not() {
        assert!(owner_alive(&owner()));
        assert!(!owner_alive("1-0"));
        assert!(!owner_alive("not-a-token"));
        assert!(!owner_alive(""));
    }
}
