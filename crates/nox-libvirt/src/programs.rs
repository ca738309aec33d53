//! Finding the few host programs the VM backend runs, and their versions.

use std::path::PathBuf;
use std::process::Command;

/// The first executable called `name` on PATH or in the sbin directories root uses.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The first line `program --version` prints, if it runs.
pub fn version_line(program: &PathBuf) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// The QEMU system emulator for the host's architecture.
pub fn qemu_system_name() -> String {
    format!("qemu-system-{}", std::env::consts::ARCH)
}
