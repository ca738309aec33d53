//! What the VM backend needs of the host, checked live for `nox doctor`.

use nox_core::config::{DomainType, VmConfig};
use nox_core::{BackendKind, Check};

use crate::kvm_probe::{self, KvmVerdict};
use crate::programs;

const VM: Option<BackendKind> = Some(BackendKind::Vm);

pub fn run(config: &VmConfig) -> Vec<Check> {
    vec![
        kvm(config),
        libvirtd(&config.uri),
        program(
            "qemu-system",
            &programs::qemu_system_name(),
            "qemu-system-x86",
        ),
        program("qemu-img", "qemu-img", "qemu-utils"),
        passt(),
        seed_tool(),
    ]
}

fn kvm(config: &VmConfig) -> Check {
    let verdict = kvm_probe::probe();
    match (config.domain_type, verdict) {
        (DomainType::Qemu, _) => Check::warn(
            "kvm",
            VM,
            "[vm] domain_type = \"qemu\": VMs run under software emulation (slow)",
            "set [vm] domain_type = \"auto\" to use KVM when this host can",
        ),
        (_, KvmVerdict::Usable { elapsed }) => Check::pass(
            "kvm",
            VM,
            format!(
                "KVM runs ordinary guests (probe guest booted in {} ms): VMs use domain type kvm",
                elapsed.as_millis()
            ),
        ),
        (DomainType::Auto, KvmVerdict::Unusable(why)) => Check::warn(
            "kvm",
            VM,
            format!("KVM cannot run ordinary guests ({why}): VMs will run under software emulation (domain type qemu), much slower"),
            "for full speed, run nox on a host with hardware virtualization (vmx/svm) and the kvm_intel or kvm_amd module",
        ),
        (DomainType::Kvm, KvmVerdict::Unusable(why)) => Check::fail(
            "kvm",
            VM,
            format!("[vm] domain_type = \"kvm\" but KVM cannot run ordinary guests ({why})"),
            "set [vm] domain_type = \"auto\" (or \"qemu\") to fall back to software emulation",
        ),
    }
}

fn libvirtd(uri: &str) -> Check {
    // libvirt prints its errors to stderr by default; nox reports them itself.
    virt::error::clear_error_callback();
    match virt::connect::Connect::open(Some(uri)) {
        Ok(conn) => {
            let version = conn
                .lib_version()
                .map(|v| format!("libvirt {}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000))
                .unwrap_or_else(|_| "libvirt".into());
            Check::pass("libvirtd", VM, format!("reachable at {uri} ({version})"))
        }
        Err(e) => Check::fail(
            "libvirtd",
            VM,
            format!("cannot connect to {uri}: {}", e.message()),
            "start libvirtd (`libvirtd -d`, or `cargo xtask setup` on Debian 12), or set [vm] uri",
        ),
    }
}

fn program(id: &str, name: &str, package: &str) -> Check {
    match programs::find(name) {
        Some(path) => {
            let version = programs::version_line(&path).unwrap_or_default();
            Check::pass(
                id,
                VM,
                format!("{} {version}", path.display())
                    .trim_end()
                    .to_string(),
            )
        }
        None => Check::fail(
            id,
            VM,
            format!("{name} not found"),
            format!("install the {package} package"),
        ),
    }
}

fn passt() -> Check {
    match programs::find("passt") {
        Some(path) => Check::pass(
            "passt",
            VM,
            format!("{} (for --network user)", path.display()),
        ),
        None => Check::warn(
            "passt",
            VM,
            "passt not found: --network user is unavailable",
            "install the passt package",
        ),
    }
}

fn seed_tool() -> Check {
    let tools = ["cloud-localds", "genisoimage", "xorriso", "mkisofs"];
    match tools.iter().find_map(|t| programs::find(t)) {
        Some(path) => Check::pass(
            "seed-tool",
            VM,
            format!("{} (builds cloud-init seeds)", path.display()),
        ),
        None => Check::fail(
            "seed-tool",
            VM,
            "no tool to build a cloud-init seed (cloud-localds, genisoimage, xorriso or mkisofs)",
            "install the genisoimage package",
        ),
    }
}
