//! Can KVM run an ordinary guest on this host? `/dev/kvm` alone proves nothing: on hosts with
//! nested PVM KVM (`kvm_pvm`) the ioctls succeed, yet QEMU fails on BIOS guests with the host
//! CPU model ("failed to set MSR 0x10a") or in SeaBIOS with others.
//!
//! So we ask QEMU to do what a guest does, with the CPU model nox's KVM domains use
//! (host-passthrough): SeaBIOS boots a 512-byte boot sector that switches from real mode to
//! protected mode, enables paging and long mode, then writes to QEMU's `isa-debug-exit` port.
//! QEMU exits with status `(1 << 1) | 1 = 3` only if all of that ran. Anything else (an error,
//! a crash, a hang until the timeout) means KVM cannot run nox's guests here.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nox_core::host::{Cmd, Runner};

/// The QEMU system emulator for the host's architecture.
pub fn qemu_system_name() -> String {
    format!("qemu-system-{}", std::env::consts::ARCH)
}

/// Assembled from this source with `as --32` and `ld -Ttext 0x7c00 --oformat binary`:
///
/// ```text
/// .code16
///   cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7c00,%sp
///   lgdtl gdt_desc
///   mov %cr0,%eax; or $1,%eax; mov %eax,%cr0          # protected mode
///   ljmpl $0x08,$pm
/// .code32
/// pm: mov $0x10,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
///   mov $0x1000,%edi; xor %eax,%eax; mov $0xc00,%ecx; rep stosl   # zero 3 page tables
///   movl $0x2003,0x1000; movl $0x3003,0x2000; movl $0x83,0x3000  # identity-map 2 MiB
///   mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4                   # PAE
///   mov $0x1000,%eax; mov %eax,%cr3
///   mov $0xC0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr            # EFER.LME
///   mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0             # paging: long mode
///   ljmpl $0x18,$lm
/// .code64
/// lm: mov $1,%al; out %al,$0xf4                                   # isa-debug-exit
/// 1:  hlt; jmp 1b
/// gdt: null, code32, data32, code64;  gdt_desc: limit, base;  0x55 0xaa at 510
/// ```
const BOOT_SECTOR_HEAD: [u8; 176] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x66, 0x0f, 0x01, 0x16, 0xb0, 0x7c,
    0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x22, 0x7c, 0x00, 0x00,
    0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbf, 0x00, 0x10, 0x00,
    0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c, 0x00, 0x00, 0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x20, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00, 0xc7, 0x05,
    0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22,
    0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,
    0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f,
    0x22, 0xc0, 0xea, 0x89, 0x7c, 0x00, 0x00, 0x18, 0x00, 0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
];

/// The gdt descriptor follows the table: limit 0x1f, base 0x7c90.
const GDT_DESC: [u8; 6] = [0x1f, 0x00, 0x90, 0x7c, 0x00, 0x00];

/// QEMU's exit status when the guest wrote 1 to isa-debug-exit.
const GUEST_SUCCESS: i32 = 3;

/// SeaBIOS under KVM on a healthy host reaches the boot sector in well under a second; under
/// nested or emulated KVM it can take several. Past this, the guest is stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

fn boot_sector() -> [u8; 512] {
    let mut s = [0u8; 512];
    s[..BOOT_SECTOR_HEAD.len()].copy_from_slice(&BOOT_SECTOR_HEAD);
    s[BOOT_SECTOR_HEAD.len()..BOOT_SECTOR_HEAD.len() + GDT_DESC.len()].copy_from_slice(&GDT_DESC);
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

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
    disk.write_all(&boot_sector()).map_err(io)?;
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
        .timeout(PROBE_TIMEOUT);
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
    if end.timed_out {
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
    fn boot_sector_is_a_valid_mbr_with_its_gdt_where_the_code_expects_it() {
        let s = boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        // `lgdtl 0x7cb0`: the descriptor sits at offset 0xb0.
        assert_eq!(&s[12..16], &[0x01, 0x16, 0xb0, 0x7c]);
        assert_eq!(&s[0xb0..0xb6], &GDT_DESC);
        // The descriptor's base points at the GDT (offset 0x90), whose first entry is null.
        assert_eq!(&s[0x90..0x98], &[0; 8]);
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
