//! `nox doctor` against this very host: it must tell the truth, KVM above all.

use nox_tests::{live, nox};
use serde_json::Value;

fn doctor() -> (Value, i32) {
    let out = nox().args(["doctor", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap())
}

fn check<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v}"))
}

#[test]
fn doctor_reports_kvm_truthfully() {
    if !live("doctor_reports_kvm_truthfully") {
        return;
    }
    let (v, _) = doctor();
    let kvm = check(&v, "kvm");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let hw_virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw_virt {
        // Without vmx/svm, whatever /dev/kvm is (PVM here), it cannot run ordinary guests
        // with nox's CPU model: doctor must not claim it can, and must say what happens instead.
        assert_eq!(kvm["status"], "warn", "{kvm}");
        let detail = kvm["detail"].as_str().unwrap();
        assert!(detail.contains("software emulation"), "{detail}");
    } else {
        assert_eq!(kvm["status"], "pass", "{kvm}");
    }
}

#[test]
fn doctor_passes_on_a_set_up_host() {
    if !live("doctor_passes_on_a_set_up_host") {
        return;
    }
    // `cargo xtask setup` ran before the live tests: everything it provides must be found.
    let (v, code) = doctor();
    for id in [
        "libvirtd",
        "qemu-system",
        "qemu-img",
        "passt",
        "liblxc",
        "bridge",
        "subids",
        "cgroup",
        "tun",
    ] {
        assert_eq!(check(&v, id)["status"], "pass", "{}", check(&v, id));
    }
    assert_eq!(v["ready"]["vm"], true);
    assert_eq!(v["ready"]["lxc"], true);
    assert_eq!(code, 0);
}

#[test]
fn doctor_fails_when_libvirtd_is_unreachable() {
    if !live("doctor_fails_when_libvirtd_is_unreachable") {
        return;
    }
    let dir = std::env::temp_dir().join("nox-doctor-test");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("nox.toml");
    std::fs::write(
        &cfg,
        "[vm]\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"\n",
    )
    .unwrap();
    let out = nox()
        .env("NOX_CONFIG", &cfg)
        .args(["doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("libvirtd")).unwrap();
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(text.contains("fix: start libvirtd"), "{text}");
    // The default backend (vm) cannot work, so doctor exits 1.
    assert_eq!(out.status.code(), Some(1));
}
