//! Choosing the domain type: `[vm] domain_type`, with `auto` decided by the KVM probe.
//!
//! The probe boots a tiny guest, so its verdict is cached for the host's current boot in
//! `/run/nox/kvm-probe` (keyed by the kernel's boot id and the probe's version): KVM does not
//! appear or vanish without a reboot, and create stays fast. A new probe is a new key, so a
//! verdict the old probe got wrong does not outlive it.

use std::path::Path;

use nox_core::config::DomainType;
use nox_core::host::Runner;
use nox_core::{Error, Progress};

use crate::domain::Accel;
use crate::kvm_probe::{self, KvmVerdict};

const CACHE: &str = "/run/nox/kvm-probe";

fn boot_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{boot} probe-{}", kvm_probe::PROBE_VERSION)
}

/// `Ok(None)` means KVM works; `Ok(Some(reason))` that it cannot run ordinary guests.
fn kvm_unusable_reason(runner: &dyn Runner) -> Option<String> {
    let boot = boot_id();
    if let Ok(text) = std::fs::read_to_string(CACHE) {
        if let Some((id, verdict)) = text.split_once('\n') {
            if id == boot {
                return (verdict != "usable").then(|| verdict.to_string());
            }
        }
    }
    let verdict = match kvm_probe::probe(runner) {
        KvmVerdict::Usable { .. } => None,
        KvmVerdict::Unusable(why) => Some(why),
    };
    if let Some(dir) = Path::new(CACHE).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(
        CACHE,
        format!("{boot}\n{}", verdict.as_deref().unwrap_or("usable")),
    );
    verdict
}

pub fn choose(
    configured: DomainType,
    runner: &dyn Runner,
    progress: &dyn Progress,
) -> Result<Accel, Error> {
    let chosen = choose_quietly(configured, runner, progress);
    if let Ok(accel) = &chosen {
        tracing::info!(?configured, ?accel, "VM acceleration chosen");
    }
    chosen
}

fn choose_quietly(
    configured: DomainType,
    runner: &dyn Runner,
    progress: &dyn Progress,
) -> Result<Accel, Error> {
    match configured {
        DomainType::Qemu => Ok(Accel::Qemu),
        DomainType::Kvm => match kvm_unusable_reason(runner) {
            None => Ok(Accel::Kvm),
            Some(why) => Err(Error::failed(
                format!(
                    "[vm] domain_type = \"kvm\" but KVM cannot run ordinary guests here ({why})"
                ),
                "set [vm] domain_type = \"auto\" to fall back to software emulation",
            )),
        },
        DomainType::Auto => match kvm_unusable_reason(runner) {
            None => Ok(Accel::Kvm),
            Some(why) => {
                tracing::info!(%why, "KVM unusable, falling back to software emulation");
                progress.warn("KVM cannot run ordinary guests on this host: using software emulation (slow); `nox doctor` says why");
                Ok(Accel::Qemu)
            }
        },
    }
}
