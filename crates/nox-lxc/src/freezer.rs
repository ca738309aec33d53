//! Freezing a container without liblxc's one-second wait.
//!
//! On a host with the cgroup v1 freezer, liblxc's `freeze` writes `FROZEN`, reads the state
//! back and, while it still says `FREEZING` (it does for a moment with any process running),
//! sleeps a whole second before looking again: most snapshots of a running container paid
//! 1 s for a freeze that takes a millisecond. Here nox writes `FROZEN` to the container's
//! v1 freezer itself and polls the state every millisecond; liblxc's `freeze` then finds it
//! frozen and returns at once. liblxc's call stays the one that counts (it knows the
//! container's cgroup for certain): if nox's guess of the path is wrong or the write is
//! refused, liblxc freezes as before, only slower. cgroup v2 is left to liblxc, which waits
//! on `cgroup.events` without sleeping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nox_core::Error;

use crate::liblxc::Container;

/// How long to poll before leaving the rest to liblxc.
const POLL_FOR: Duration = Duration::from_secs(2);

/// Freezes `c` (running) with liblxc, having frozen its v1 freezer cgroup first when there
/// is one.
pub fn freeze(c: &Container) -> Result<(), Error> {
    if let Some(state) = c.init_pid().and_then(v1_state_file) {
        prefreeze(&state);
    }
    c.freeze().map_err(Error::from)
}

/// `/sys/fs/cgroup/freezer/PATH/freezer.state` for the process `pid`, if the v1 freezer is
/// mounted and holds it.
fn v1_state_file(pid: i32) -> Option<PathBuf> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = v1_freezer_path(&table)?;
    let file = PathBuf::from("/sys/fs/cgroup/freezer")
        .join(path.trim_start_matches('/'))
        .join("freezer.state");
    file.is_file().then_some(file)
}

/// The freezer hierarchy's path in a `/proc/PID/cgroup` table (`ID:CONTROLLERS:PATH` lines;
/// v2's line has no controllers and is not the v1 freezer).
fn v1_freezer_path(table: &str) -> Option<&str> {
    table.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "freezer")
            .then_some(path)
    })
}

/// Writes `FROZEN` and polls until the state says so, for [`POLL_FOR`] at most. Errors are
/// liblxc's to report: its `freeze` follows.
fn prefreeze(state: &std::path::Path) {
    if std::fs::write(state, "FROZEN").is_err() {
        return;
    }
    let until = Instant::now() + POLL_FOR;
    while Instant::now() < until {
        match std::fs::read_to_string(state) {
            Ok(s) if s.trim() == "FROZEN" => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_freezer_path_is_read_from_its_own_line() {
        let hybrid = "12:freezer:/lxc.payload.web\n\
                      11:cpu,cpuacct:/lxc.payload.web\n\
                      1:name=systemd:/lxc.payload.web/init.scope\n\
                      0::/lxc.payload.web/init.scope\n";
        assert_eq!(v1_freezer_path(hybrid), Some("/lxc.payload.web"));
        let shared = "4:cpuset,freezer:/a/b\n";
        assert_eq!(v1_freezer_path(shared), Some("/a/b"));
    }

    #[test]
    fn a_v2_only_table_has_no_v1_freezer() {
        assert_eq!(v1_freezer_path("0::/lxc.payload.web\n"), None);
        assert_eq!(v1_freezer_path("3:freezerx:/x\n"), None);
        assert_eq!(v1_freezer_path(""), None);
    }
}
