//! Port forwards for containers: nftables DNAT from a host socket to the container's address
//! on its bridge (see [`nox_core::forward::nft`]).
//!
//! The forwards live in nox's record (`nox.json`). The DNAT elements exist only while the
//! container runs, pointing at the address it has now: `start` (re)applies them once the
//! container has an IPv4 address (its DHCP lease can change between boots), `stop` and
//! `delete` remove them. A start that does not come through nox (liblxc's autostart at host
//! boot, `lxc-start`) gets them from a start-host hook nox puts in the container's config while
//! it has forwards ([`hook_entries`]): it runs `nox forward follow --detach NAME`, which returns
//! at once and, in the background, waits for the address and applies them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use nox_core::forward::{nft, Forward, ForwardKey};
use nox_core::instance::NetworkSpec;
use nox_core::{Error, InstanceName, Progress};

use crate::config::{render_entries, Entry};
use crate::liblxc::Container;
use crate::list::find;
use crate::record::CtRecord;
use crate::LxcBackend;

/// How long a started container may take to get its address before forwards give up.
const ADDRESS_WAIT: Duration = Duration::from_secs(60);

fn bridge(b: &LxcBackend, rec: &CtRecord) -> String {
    match &rec.spec.network {
        NetworkSpec::Bridge(name) => name.clone(),
        _ if rec.spec.privileged => b.config.lxc.privileged_bridge.clone(),
        _ => b.config.lxc.bridge.clone(),
    }
}

fn guest_address(c: &Container) -> Option<Ipv4Addr> {
    c.ipv4()
        .iter()
        .filter(|ip| !nox_core::instance::is_tailnet(ip))
        .find_map(|ip| ip.parse().ok())
}

/// Points the record's forwards at the running container's current address, waiting for the
/// address if it has none yet.
pub fn apply(
    b: &LxcBackend,
    c: &Container,
    rec: &CtRecord,
    progress: &dyn Progress,
) -> Result<(), Error> {
    if rec.forwards.is_empty() {
        return Ok(());
    }
    let name = rec.spec.name.as_str();
    nft::apply_when_addressed(
        &*b.host.runner,
        name,
        &bridge(b, rec),
        &rec.forwards,
        ADDRESS_WAIT,
        &format!("`nox exec {name} -- ip addr`"),
        progress,
        || {
            // STARTING counts (the start-host hook runs then); a stopped one gets no address.
            if c.state() == "STOPPED" {
                return Err(Error::failed(
                    format!("{name} stopped before it had an address for its port forwards"),
                    format!("see why in its log, then `nox start {name}`"),
                ));
            }
            Ok(guest_address(c))
        },
    )
}

/// Removes the record's DNAT elements (stop, delete).
pub fn withdraw(b: &LxcBackend, rec: &CtRecord) -> Result<(), Error> {
    nft::remove(&*b.host.runner, rec.spec.name.as_str(), &rec.forwards)
}

/// [`apply`] for a start that did not come through nox (the start-host hook's `nox forward
/// follow`): the container may still be starting, so its address is waited for.
pub fn reapply(b: &LxcBackend, name: &InstanceName, progress: &dyn Progress) -> Result<(), Error> {
    let (c, rec) = find(b, name)?;
    apply(b, &c, &rec, progress)
}

const HOOK_WHY: &str =
    "nox: re-point this container's port forwards at its address whenever it starts, with or without nox";

/// The config lines that run `nox forward follow --detach NAME` at every start. liblxc runs a
/// hook line through `/bin/sh -c` (it has no argv form), so the line holds only nox's own path
/// and config path, each single-quoted, and the instance name, whose characters are checked
/// when it is parsed (letters, digits, '-'). `lxc.hook.version = 1`: liblxc passes its details
/// in the environment and appends no arguments.
pub fn hook_entries(nox: &Path, config: Option<&Path>, name: &InstanceName) -> Vec<Entry> {
    let mut line = String::new();
    if let Some(config) = config {
        line.push_str(&format!(
            "env {}={} ",
            nox_core::config::ENV_CONFIG,
            quoted(config)
        ));
    }
    line.push_str(&format!("{} forward follow --detach {name}", quoted(nox)));
    vec![
        Entry {
            key: "lxc.hook.version",
            value: "1".into(),
            why: Some(HOOK_WHY),
        },
        Entry {
            key: "lxc.hook.start-host",
            value: line,
            why: None,
        },
    ]
}

/// `path` as one single-quoted shell word.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

fn is_hook_line(line: &str) -> bool {
    line == format!("# {HOOK_WHY}")
        || line == "lxc.hook.version = 1"
        || (line.starts_with("lxc.hook.start-host = ")
            && line.contains(" forward follow --detach "))
}

/// The container's config text with nox's forward hook (`Some`: these lines) or without it.
fn with_hook(config: &str, hook: Option<&[Entry]>) -> String {
    let mut out: String = config
        .lines()
        .filter(|l| !is_hook_line(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(entries) = hook {
        out.push_str(&render_entries(entries));
    }
    out
}

/// Puts nox's hook in the container's config (`on`), or takes it out. Returns the config as it
/// was, for undoing.
fn set_hook(b: &LxcBackend, name: &InstanceName, on: bool) -> Result<String, Error> {
    let config = b.config.lxc.lxcpath.join(name.as_str()).join("config");
    let before = std::fs::read_to_string(&config)
        .map_err(|e| Error::io("reading the container's config", e))?;
    let entries = if on {
        let nox = std::env::current_exe().map_err(|e| Error::io("finding nox's own path", e))?;
        let env_config =
            std::env::var_os(nox_core::config::ENV_CONFIG).map(std::path::PathBuf::from);
        Some(hook_entries(&nox, env_config.as_deref(), name))
    } else {
        None
    };
    crate::mounts::write_atomic(&config, &with_hook(&before, entries.as_deref()))?;
    Ok(before)
}

pub fn list(b: &LxcBackend, name: &InstanceName) -> Result<Vec<Forward>, Error> {
    Ok(find(b, name)?.1.forwards)
}

pub fn add(b: &LxcBackend, name: &InstanceName, forward: Forward) -> Result<Option<String>, Error> {
    let (c, mut rec) = find(b, name)?;
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let before = rec.clone();
    let config_before = set_hook(b, name, true)?;
    rec.forwards.push(forward);
    if let Err(e) = rec.write(&dir) {
        let _ = crate::mounts::write_atomic(&dir.join("config"), &config_before);
        return Err(Error::io("writing nox's record", e));
    }
    if c.is_running() {
        let one = CtRecord {
            forwards: vec![forward],
            ..rec.clone()
        };
        if let Err(e) = apply(b, &c, &one, &nox_core::progress::Quiet) {
            // Leave nothing half-made: the record and config go back to what they were.
            let _ = before.write(&dir);
            let _ = crate::mounts::write_atomic(&dir.join("config"), &config_before);
            return Err(e);
        }
        return Ok(None);
    }
    Ok(Some(format!(
        "{name} is stopped: the forward takes effect when it starts"
    )))
}

pub fn remove(
    b: &LxcBackend,
    name: &InstanceName,
    key: ForwardKey,
) -> Result<(Vec<Forward>, Option<String>), Error> {
    let (_, mut rec) = find(b, name)?;
    let (gone, kept): (Vec<Forward>, Vec<Forward>) =
        rec.forwards.iter().partition(|f| f.matches(&key));
    if gone.is_empty() {
        return Err(nox_core::forward::no_such_forward(name, key));
    }
    nft::remove(&*b.host.runner, name.as_str(), &gone)?;
    if kept.is_empty() {
        set_hook(b, name, false)?;
    }
    rec.forwards = kept;
    rec.write(&b.config.lxc.lxcpath.join(name.as_str()))
        .map_err(|e| Error::io("writing nox's record", e))?;
    Ok((gone, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_is_one_quoted_command_and_goes_whole() {
        let name: InstanceName = "web-1".parse().unwrap();
        let entries = hook_entries(
            Path::new("/opt/it's/nox"),
            Some(Path::new("/etc/nox test.toml")),
            &name,
        );
        let text = render_entries(&entries);
        assert_eq!(
            text,
            format!(
                "# {HOOK_WHY}\nlxc.hook.version = 1\nlxc.hook.start-host = env NOX_CONFIG='/etc/nox test.toml' '/opt/it'\\''s/nox' forward follow --detach web-1\n"
            )
        );
        let config = "lxc.uts.name = web-1\nlxc.hook.version = 0\n";
        let on = with_hook(config, Some(&entries));
        assert_eq!(on, format!("{config}{text}"));
        // Added twice: still once.
        assert_eq!(with_hook(&on, Some(&entries)), on);
        // Taken out: the config as it was, another program's hook version line kept.
        assert_eq!(with_hook(&on, None), config);
        let plain = hook_entries(Path::new("/usr/bin/nox"), None, &name);
        assert_eq!(
            plain[1].value,
            "'/usr/bin/nox' forward follow --detach web-1"
        );
    }
}
