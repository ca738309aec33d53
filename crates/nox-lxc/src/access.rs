//! exec, ssh, console, passwd and resize for containers.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use nox_core::backend::{Handoff, Resize};
use nox_core::{Error, InstanceName, Progress};

use crate::cgroup::CgroupLayout;
use crate::list::find;
use crate::LxcBackend;

fn running(c: &crate::liblxc::Container, name: &InstanceName) -> Result<(), Error> {
    if c.is_running() {
        Ok(())
    } else {
        Err(Error::not_running(name.as_str()))
    }
}

/// Streams straight through: the command writes to nox's own stdout and stderr.
pub fn exec(b: &LxcBackend, name: &InstanceName, argv: &[String]) -> Result<i32, Error> {
    let (c, _) = find(b, name)?;
    running(&c, name)?;
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    c.attach_with_fds(&argv, 0, 1, 2).map_err(Error::from)
}

/// An interactive login shell for the instance's user, through attach: no network path needed.
pub fn ssh(b: &LxcBackend, name: &InstanceName, command: &[String]) -> Result<Handoff, Error> {
    let (c, rec) = find(b, name)?;
    running(&c, name)?;
    let mut args = vec![
        "-P".to_string(),
        b.config.lxc.lxcpath.display().to_string(),
        "-n".into(),
        name.to_string(),
        "--clear-env".into(),
        "--".into(),
        "su".into(),
        "-".into(),
        rec.spec.user.clone(),
    ];
    if !command.is_empty() {
        let quoted = command
            .iter()
            .map(|a| nox_core::spec::sh_quote(a))
            .collect::<Result<Vec<String>, Error>>()?;
        args.extend(["-c".into(), quoted.join(" ")]);
    }
    Ok(Handoff {
        program: PathBuf::from("lxc-attach"),
        args,
        note: None,
    })
}

pub fn console(b: &LxcBackend, name: &InstanceName) -> Result<Handoff, Error> {
    let (c, _) = find(b, name)?;
    running(&c, name)?;
    Ok(Handoff {
        program: PathBuf::from("lxc-console"),
        args: vec![
            "-P".into(),
            b.config.lxc.lxcpath.display().to_string(),
            "-n".into(),
            name.to_string(),
        ],
        note: Some(format!(
            "connecting to {name}'s console; detach with Ctrl+a q"
        )),
    })
}

pub fn passwd(
    b: &LxcBackend,
    name: &InstanceName,
    user: &str,
    password: &str,
) -> Result<(), Error> {
    let (c, _) = find(b, name)?;
    running(&c, name)?;
    // The password reaches chpasswd on stdin through a pipe: never in argv, never in a file
    // (a temp file's blocks could reach the disk and outlive it). `user:password` is far
    // below the pipe's capacity, so it is written whole before chpasswd starts; the kernel
    // holds it only until chpasswd reads it.
    let (rx, tx) = nix::unistd::pipe().map_err(|e| Error::io("creating a pipe", e.into()))?;
    let mut tx = std::fs::File::from(tx);
    // `writeln!` on a file writes each piece as it goes: no formatted copy in memory.
    writeln!(tx, "{user}:{password}").map_err(|e| Error::io("writing stdin", e))?;
    drop(tx);
    let devnull = std::fs::File::create("/dev/null").map_err(|e| Error::io("/dev/null", e))?;
    let code = c
        .attach_with_fds(&["chpasswd"], rx.as_raw_fd(), devnull.as_raw_fd(), 2)
        .map_err(Error::from)?;
    if code != 0 {
        return Err(Error::failure(format!(
            "chpasswd failed in {name} (exit {code})"
        )));
    }
    Ok(())
}

pub fn resize(
    b: &LxcBackend,
    name: &InstanceName,
    r: Resize,
    _progress: &dyn Progress,
) -> Result<String, Error> {
    if r.disk_bytes.is_some() {
        return Err(Error::Refused {
            message: "resizing a container's disk is not possible on this storage: it is an overlay on a directory, sharing the host's filesystem".into(),
            hint: "containers have no disk of their own to grow; resize --cpus or --memory".into(),
        });
    }
    let (c, mut rec) = find(b, name)?;
    let layout = CgroupLayout::detect().map_err(|e| Error::io("reading /sys/fs/cgroup", e))?;
    let v2 = layout == CgroupLayout::V2;
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let mut config = std::fs::read_to_string(dir.join("config"))
        .map_err(|e| Error::io("reading the config", e))?;
    let mut set = |key: &str, value: String, live: &str| -> Result<(), Error> {
        config = replace_key(&config, key, &value);
        if c.is_running() {
            c.set_cgroup_item(live, &value).map_err(Error::from)?;
        }
        Ok(())
    };
    if let Some(cpus) = r.cpus {
        if v2 {
            set(
                "lxc.cgroup2.cpu.max",
                format!("{} 100000", cpus as u64 * 100_000),
                "cpu.max",
            )?;
        } else {
            set(
                "lxc.cgroup.cpu.cfs_quota_us",
                (cpus as u64 * 100_000).to_string(),
                "cpu.cfs_quota_us",
            )?;
        }
        rec.spec.cpus = cpus;
    }
    if let Some(mem) = r.memory_bytes {
        if v2 {
            set("lxc.cgroup2.memory.max", mem.to_string(), "memory.max")?;
        } else {
            set(
                "lxc.cgroup.memory.limit_in_bytes",
                mem.to_string(),
                "memory.limit_in_bytes",
            )?;
        }
        rec.spec.memory_bytes = mem;
    }
    std::fs::write(dir.join("config"), config).map_err(|e| Error::io("writing the config", e))?;
    rec.write(&dir)
        .map_err(|e| Error::io("writing nox's record", e))?;
    Ok(if c.is_running() {
        "applied live".into()
    } else {
        String::new()
    })
}

/// Adds LXC's nesting lines to the container's config and record; a running container is
/// restarted (cleanly) so they take effect.
pub fn enable_nesting(
    b: &LxcBackend,
    name: &InstanceName,
    progress: &dyn Progress,
) -> Result<Option<String>, Error> {
    use nox_core::Backend;
    let (c, mut rec) = find(b, name)?;
    if rec.spec.nesting {
        return Ok(None);
    }
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let before = std::fs::read_to_string(dir.join("config"))
        .map_err(|e| Error::io("reading the config", e))?;
    // Docker's own volume off the overlay root (docker_volume.rs), owned by the container's
    // root as the config's id map says.
    let owner = crate::docker_volume::owner_from_config(&before);
    let volume = crate::create::make_docker_volume(b, name, owner, progress)?;
    let mut entries = crate::config::nesting_entries();
    entries.push(crate::docker_volume::mount_entry(&volume));
    let after = before.clone() + &crate::config::render_entries(&entries);
    let write = |text: &str| {
        std::fs::write(dir.join("config"), text).map_err(|e| Error::io("writing the config", e))
    };
    let running = c.is_running();
    drop(c);
    // The record says nesting only once the container runs with it (or will at its next
    // start): a stop that fails leaves both config and record as they were.
    if running {
        b.stop(name, false, Duration::from_secs(60), progress)?;
    }
    write(&after)?;
    rec.spec.nesting = true;
    if let Err(e) = rec.write(&dir) {
        let _ = write(&before);
        return Err(Error::io("writing nox's record", e));
    }
    if !running {
        return Ok(Some(format!(
            "enabled nesting in {name} for Docker (LXC's nesting.conf lines, /var/lib/docker on the host filesystem)"
        )));
    }
    b.start(name, Some(Duration::from_secs(300)), progress)?;
    Ok(Some(format!(
        "enabled nesting in {name} for Docker (LXC's nesting.conf lines, /var/lib/docker on the host filesystem) and restarted it"
    )))
}

/// Sets `key = value` in LXC config text, replacing an existing line or appending one.
pub fn replace_key(config: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = config
        .lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("{key} = {value}"));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::replace_key;

    #[test]
    fn config_keys_are_replaced_or_appended() {
        let c = "a = 1\nlxc.cgroup.memory.limit_in_bytes = 5\n";
        assert_eq!(
            replace_key(c, "lxc.cgroup.memory.limit_in_bytes", "9"),
            "a = 1\nlxc.cgroup.memory.limit_in_bytes = 9\n"
        );
        assert_eq!(
            replace_key(c, "b", "2"),
            "a = 1\nlxc.cgroup.memory.limit_in_bytes = 5\nb = 2\n"
        );
    }
}
