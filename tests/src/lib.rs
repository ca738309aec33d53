//! Support for nox's live tests: the live-environment gate, the `nox` binary under test, the
//! test image, the fixture that owns and cleans up what tests create, and small loop-mounted
//! filesystems to fill.

pub mod cluster;
pub mod docker;
pub mod fixture;
pub mod image;
pub mod loopfs;
pub mod proxy;
pub mod s3;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The variable that declares a live environment (libvirtd, LXC, test image) is set up.
pub const LIVE_ENV: &str = "NOX_IT";

/// True when live tests should run. Otherwise prints a loud skip notice and returns false.
///
/// The notice goes straight to the stderr handle, which libtest does not capture, so a plain
/// `cargo test` shows every skipped live test.
pub fn live(test: &str) -> bool {
    if std::env::var(LIVE_ENV).as_deref() == Ok("1") {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED live test `{test}`: {LIVE_ENV}=1 is not set. Run `cargo xtask it` (or `cargo xtask ci`) to run it against this host's libvirtd and LXC."
    );
    false
}

/// Where `cargo xtask ci` puts the `nox` it built with fault points, before any test runs.
pub const BIN_ENV: &str = "NOX_TEST_BIN";

/// The `nox` binary of this workspace, with the fault points the crash tests kill it at
/// (inert unless `NOX_FAULT_POINT` names one): the one `cargo xtask ci` built (`NOX_TEST_BIN`),
/// else built once per test process. CI runs test binaries side by side, and a `cargo build`
/// in one re-links `target/debug/nox` under another's feet, so CI's copy lives elsewhere.
pub fn nox_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os(BIN_ENV) {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "{BIN_ENV}={} is not a file", bin.display());
            return bin;
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", "nox-cli", "--bin", "nox"])
            .args(["--features", "fault-points"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building nox failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug/nox")
    })
    .clone()
}

/// A `nox` command that sees no host or user config file: only `NOX_CONFIG`, if the test sets it.
pub fn nox() -> Command {
    let mut cmd = Command::new(nox_bin());
    let empty = std::env::temp_dir().join("nox-tests-empty-home");
    let _ = std::fs::create_dir_all(&empty);
    cmd.env("HOME", &empty)
        .env("XDG_CONFIG_HOME", &empty)
        .env_remove("NOX_CONFIG");
    cmd
}

/// Output bytes as text, for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the command succeeded, showing its exit code and output when it did not.
#[track_caller]
pub fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Runs `nox` on a new pseudo-terminal (its controlling terminal), answers `answer` once
/// `prompt` appears, and returns the exit code and everything it printed.
pub fn on_a_terminal(
    mut cmd: std::process::Command,
    prompt: &str,
    answer: &[u8],
) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    cmd.stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let mut m = master.try_clone().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let start = std::time::Instant::now();
    while !text(&seen.lock().unwrap()).contains(prompt) {
        assert!(
            start.elapsed().as_secs() < 30,
            "no prompt; saw: {}",
            text(&seen.lock().unwrap())
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    master.write_all(answer).unwrap();
    let status = child.wait().unwrap();
    drop(master);
    let _ = reader.join();
    let out = text(&seen.lock().unwrap());
    (status.code(), out)
}
