//! Can KVM run an ordinary guest on this host? `/dev/kvm` alone proves nothing: on hosts with
//! nested PVM KVM (`kvm_pvm`) the ioctls succeed, yet QEMU fails on BIOS guests with the host
//! CPU model ("failed to set MSR 0x10a") or in SeaBIOS with others.
//!
//! So we ask QEMU to do what a guest does, with the CPU model nox's KVM domains use
//! (host-passthrough): SeaBIOS boots a 512-byte boot sector that switches from real mode to
//! protected mode, takes an interrupt there and returns from it, enables paging and long
//! mode, then writes to QEMU's `isa-debug-exit` port. QEMU exits with status
//! `(1 << 1) | 1 = 3` only if all of that ran. Anything else (an error, a crash, a hang until
//! the timeout) means KVM cannot run nox's guests here.
//!
//! The interrupt is there because of a host where the probe without it passed and every real
//! guest then stopped in its boot loader with "KVM internal error ... emulation failure" at
//! its first `int`/`iret` in protected mode: a probe must do what the real guest does first.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nox_core::host::{Cmd, Runner};

/// The QEMU system emulator for the host's architecture.
pub fn qemu_system_name() -> String {
    format!("qemu-system-{}", std::env::consts::ARCH)
}

/// The probe guest: a boot sector assembled from `probe/kvm-probe.S` (how to rebuild it is
/// written there, and a unit test checks the two agree).
const BOOT_SECTOR: &[u8; 512] = include_bytes!("../probe/kvm-probe.bin");

/// Changes with the probe guest, so verdicts cached by an older probe are not reused.
pub const PROBE_VERSION: u32 = 2;

/// QEMU's exit status when the guest wrote 1 to isa-debug-exit.
const GUEST_SUCCESS: i32 = 3;

/// SeaBIOS under KVM on a healthy host reaches the boot sector in well under a second; under
/// nested or emulated KVM it can take several. Past this, the guest is stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmVerdict {
    /// KVM ran the guest: VMs can use domain type `kvm`.
    Usable { elapsed: Duration },
    /// KVM is missing or cannot run ordinary guests; the reason is one line.
    Unusable(String),
}

/// Runs the probe. Takes well under a second on a healthy KVM host.
pub fn probe(runner: &dyn Runner) -> KvmVerdict {
    if std::env::consts::ARCH != "x86_64" {
        // The boot sector is x86 code. Elsewhere, trust the device node and say so.
        return if Path::new("/dev/kvm").exists() {
            KvmVerdict::Usable {
                elapsed: Duration::ZERO,
            }
        } else {
            KvmVerdict::Unusable("/dev/kvm is missing".into())
        };
    }
    if !Path::new("/dev/kvm").exists() {
        return KvmVerdict::Unusable(
            "/dev/kvm is missing (no KVM module loaded, or no hardware virtualization)".into(),
        );
    }
    let Some(qemu) = runner.find_program(&qemu_system_name()) else {
        return KvmVerdict::Unusable(format!(
            "cannot probe KVM: {} is not installed",
            qemu_system_name()
        ));
    };
    match run_guest(runner, &qemu) {
        Ok(v) => v,
        Err(e) => KvmVerdict::Unusable(format!("cannot probe KVM: {e}")),
    }
}

fn run_guest(runner: &dyn Runner, qemu: &Path) -> nox_core::Result<KvmVerdict> {
    let io = |e| nox_core::Error::io("writing the probe's disk", e);
    let mut disk = tempfile::Builder::new()
        .prefix("nox-kvm-probe")
        .tempfile()
        .map_err(io)?;
    disk.write_all(BOOT_SECTOR).map_err(io)?;
    // A disk of a few sectors: SeaBIOS ignores drives smaller than its geometry expects.
    disk.as_file().set_len(1 << 20).map_err(io)?;
    let drive = format!("file={},format=raw,if=virtio", disk.path().display());
    let cmd = Cmd::new(qemu)
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "64",
        ])
        .args([
            "-display",
            "none",
            "-no-user-config",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-serial", "none", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-drive", &drive])
        .timeout(PROBE_TIMEOUT)
        // QEMU does not exit on a KVM internal error: it stops the guest and waits.
        .until_stderr("KVM internal error");
    let start = Instant::now();
    let end = runner.execute(
        &cmd,
        nox_core::host::Stdin::Null,
        nox_core::host::Stdout::Capture,
    )?;
    Ok(verdict(&end, start.elapsed()))
}

/// What the probe guest's end says about KVM.
fn verdict(end: &nox_core::host::Finished, elapsed: Duration) -> KvmVerdict {
    if end.timed_out && !String::from_utf8_lossy(&end.stderr).contains("KVM internal error") {
        return KvmVerdict::Unusable(format!(
            "a test guest made no progress under KVM within {}s",
            PROBE_TIMEOUT.as_secs()
        ));
    }
    if end.code == Some(GUEST_SUCCESS) {
        return KvmVerdict::Usable { elapsed };
    }
    let err = String::from_utf8_lossy(&end.stderr);
    let first_error = err
        .lines()
        .find(|l| l.contains("error") || l.contains("failed"))
        .or_else(|| err.lines().next())
        .unwrap_or("no message")
        .trim()
        .to_string();
    KvmVerdict::Unusable(format!("a test guest failed under KVM: {first_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_sector_is_a_valid_mbr_built_from_its_source() {
        assert_eq!(&BOOT_SECTOR[510..], &[0x55, 0xaa]);
        // The committed binary is what the committed source assembles to, when binutils is here.
        let dir = tempfile::tempdir().unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/probe/kvm-probe.S");
        let (obj, bin) = (dir.path().join("p.o"), dir.path().join("p.bin"));
        let assembled = std::process::Command::new("as")
            .args(["--32", "-o"])
            .arg(&obj)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        if !assembled {
            eprintln!("binutils' as is not installed: the boot sector's source is not checked");
            return;
        }
        let linked = std::process::Command::new("ld")
            .args([
                "-m",
                "elf_i386",
                "-Ttext",
                "0x7c00",
                "--oformat",
                "binary",
                "-o",
            ])
            .arg(&bin)
            .arg(&obj)
            .status()
            .unwrap();
        assert!(linked.success());
        assert_eq!(std::fs::read(&bin).unwrap(), BOOT_SECTOR);
    }

    #[test]
    fn verdicts_from_the_probe_guest_s_end() {
        use nox_core::host::Finished;
        let end = |code, stderr: &str, timed_out| Finished {
            code,
            stderr: stderr.as_bytes().to_vec(),
            timed_out,
            ..Default::default()
        };
        let t = Duration::from_millis(300);
        assert_eq!(
            verdict(&end(Some(3), "", false), t),
            KvmVerdict::Usable { elapsed: t }
        );
        let v = verdict(
            &end(
                Some(1),
                "qemu: warning: x\nqemu: error: failed to set MSR 0x10a\n",
                false,
            ),
            t,
        );
        assert_eq!(
            v,
            KvmVerdict::Unusable(
                "a test guest failed under KVM: qemu: error: failed to set MSR 0x10a".into()
            )
        );
        assert!(
            matches!(verdict(&end(None, "", true), t), KvmVerdict::Unusable(w) if w.contains("no progress"))
        );
    }
}
