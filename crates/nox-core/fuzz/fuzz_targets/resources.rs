//! `--cpus`, `--memory` and `--disk` values: refused as bad input, or a value whose printed
//! form reads back as the same value and resolves against any host without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nox_core::host::Capacity;
use nox_core::resources::{CpuRequest, DiskRequest, MemoryRequest};

/// Hosts at the edges: none of anything, a small one, the largest numbers there are.
const HOSTS: [Capacity; 3] = [
    Capacity {
        cpus: 0,
        memory_bytes: 0,
        disk_free_bytes: 0,
    },
    Capacity {
        cpus: 2,
        memory_bytes: 4 << 30,
        disk_free_bytes: 20 << 30,
    },
    Capacity {
        cpus: u32::MAX,
        memory_bytes: u64::MAX,
        disk_free_bytes: u64::MAX,
    },
];

fuzz_target!(|s: &str| {
    match s.parse::<CpuRequest>() {
        Ok(c) => {
            assert_eq!(c.to_string().parse::<CpuRequest>().ok(), Some(c), "{s:?}");
            for host in &HOSTS {
                if let Ok(n) = c.resolve(host) {
                    assert!(n >= 1 && n <= host.cpus.max(1), "{s:?} on {host:?}: {n}");
                }
            }
        }
        Err(e) => assert!(e.is_bad_input(), "{s:?}: {e}"),
    }
    match s.parse::<MemoryRequest>() {
        Ok(m) => {
            assert_eq!(
                m.to_string().parse::<MemoryRequest>().ok(),
                Some(m),
                "{s:?}"
            );
            for host in &HOSTS {
                if let Ok(b) = m.resolve(host) {
                    assert!(
                        b <= host.memory_bytes && b % (1 << 20) == 0 && b > 0,
                        "{s:?}"
                    );
                }
            }
        }
        Err(e) => assert!(e.is_bad_input(), "{s:?}: {e}"),
    }
    match s.parse::<DiskRequest>() {
        Ok(d) => {
            assert_eq!(d.to_string().parse::<DiskRequest>().ok(), Some(d), "{s:?}");
            for host in &HOSTS {
                if let Ok(b) = d.resolve(host) {
                    assert!(
                        b <= host.disk_free_bytes && b % (1 << 20) == 0 && b > 0,
                        "{s:?}"
                    );
                }
            }
        }
        Err(e) => assert!(e.is_bad_input(), "{s:?}: {e}"),
    }
});
