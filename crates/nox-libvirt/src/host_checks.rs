//! What the VM backend needs of the host, checked live for `nox doctor`.

use nox_core::config::{DomainType, VmConfig};
use nox_core::host::{Cmd, Runner};
use nox_core::{BackendKind, Check};

use crate::kvm_probe::{self, qemu_system_name, KvmVerdict};

const VM: Option<BackendKind> = Some(BackendKind::Vm);

pub fn run(config: &VmConfig, runner: &dyn Runner) -> Vec<Check> {
    vec![
        kvm(config, runner),
        libvirtd(&config.uri),
        program(
            runner,
            "qemu-system",
            &qemu_system_name(),
            "qemu-system-x86",
        ),
        program(runner, "qemu-img", "qemu-img", "qemu-utils"),
        passt(runner),
    ]
}

fn kvm(config: &VmConfig, runner: &dyn Runner) -> Check {
    let verdict = kvm_probe::probe(runner);
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

/// The first line `program --version` prints, if it runs.
fn version_line(runner: &dyn Runner, program: &std::path::Path) -> Option<String> {
    let out = runner.run(&Cmd::new(program).arg("--version")).ok()?;
    out.stdout_text()
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

fn program(runner: &dyn Runner, id: &str, name: &str, package: &str) -> Check {
    match runner.find_program(name) {
        Some(path) => {
            let version = version_line(runner, &path).unwrap_or_default();
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

fn passt(runner: &dyn Runner) -> Check {
    match runner.find_program("passt") {
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
