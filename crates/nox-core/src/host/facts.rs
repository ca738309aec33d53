//! What nox reads from the host to decide things: network interfaces and bridges, free space,
//! CPUs and memory, and randomness. Behind [`HostFacts`] so the decisions can be unit-tested
//! with [`crate::host::fake::FakeHost`].

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::secret::{Password, Zeroizing};

/// A host network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub kind: InterfaceKind,
    /// Its MAC address, lowercase, when it has one.
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceKind {
    Loopback,
    /// A Linux bridge: containers and VMs can join it.
    Bridge,
    /// A NIC backed by a device: macvtap can sit on it.
    Physical,
    Macvtap,
    /// Anything else (veth, tun, a VLAN...).
    Other,
}

pub trait HostFacts: Send + Sync + fmt::Debug {
    /// Every network interface, sorted by name.
    fn interfaces(&self) -> Result<Vec<Interface>>;

    /// Fills `buf` from the OS's CSPRNG.
    fn fill_random(&self, buf: &mut [u8]) -> Result<()>;

    /// Bytes an unprivileged writer may still write on the filesystem holding `path`, or
    /// its nearest existing parent (a directory nox is about to create).
    fn free_space(&self, path: &Path) -> Result<u64>;

    /// Online CPUs.
    fn cpus(&self) -> u32;

    /// Total memory.
    fn memory_bytes(&self) -> Result<u64>;

    /// Whether the bridge port `dev` forwards frames yet, or `None` if `dev` is no bridge's
    /// port. A new port of a bridge running STP listens and learns first, for twice the
    /// bridge's forward delay (Linux's minimum is two seconds each), and drops what it is sent
    /// meanwhile.
    fn bridge_port_forwarding(&self, dev: &str) -> Option<bool>;

    /// The interface called `name`, if the host has one.
    fn interface(&self, name: &str) -> Result<Option<Interface>> {
        Ok(self.interfaces()?.into_iter().find(|i| i.name == name))
    }

    /// Whether `name` is a bridge on this host.
    fn is_bridge(&self, name: &str) -> bool {
        matches!(
            self.interface(name),
            Ok(Some(Interface {
                kind: InterfaceKind::Bridge,
                ..
            }))
        )
    }
}

/// Randomness helpers over [`HostFacts::fill_random`].
impl dyn HostFacts + '_ {
    /// 20 characters from [A-Za-z0-9], without modulo bias, wiped from memory when dropped.
    pub fn random_password(&self) -> Result<Password> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // Its whole length up front: a String that grows leaves its old buffers, with the
        // first characters in them, in freed memory that nothing wipes.
        let mut out = Password::new(String::with_capacity(20));
        // The random bytes are the password too, until wiped.
        let mut bytes = Zeroizing::new([0u8; 32]);
        while out.len() < 20 {
            self.fill_random(&mut *bytes)?;
            // 248 = 4 * 62: the top values are rejected so every character is equally likely.
            for b in bytes.iter().filter(|b| **b < 248) {
                if out.len() < 20 {
                    out.push(ALPHABET[(*b % 62) as usize] as char);
                }
            }
        }
        Ok(out)
    }

    /// A MAC address with the prefix `oui` (QEMU's 52:54:00, LXC's 00:16:3e) and three
    /// random bytes.
    pub fn random_mac(&self, oui: [u8; 3]) -> Result<String> {
        let mut b = [0u8; 3];
        self.fill_random(&mut b)?;
        Ok([oui, b]
            .concat()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"))
    }

    /// A random (version 4) UUID, as text.
    pub fn random_uuid(&self) -> Result<String> {
        let mut b = [0u8; 16];
        self.fill_random(&mut b)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }
}

/// The host nox runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalHost;

const SYS_NET: &str = "/sys/class/net";

impl HostFacts for LocalHost {
    fn interfaces(&self) -> Result<Vec<Interface>> {
        let dir = Path::new(SYS_NET);
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {SYS_NET}"), e))?;
        let mut out: Vec<Interface> = entries
            .flatten()
            .map(|e| {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let kind = if name == "lo" {
                    InterfaceKind::Loopback
                } else if p.join("bridge").is_dir() {
                    InterfaceKind::Bridge
                } else if p.join("macvtap").exists() {
                    InterfaceKind::Macvtap
                } else if p.join("device").exists() {
                    InterfaceKind::Physical
                } else {
                    InterfaceKind::Other
                };
                let mac = std::fs::read_to_string(p.join("address"))
                    .ok()
                    .map(|m| m.trim().to_ascii_lowercase())
                    .filter(|m| !m.is_empty());
                Interface { name, kind, mac }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(buf))
            .map_err(|e| Error::io("reading /dev/urandom", e))
    }

    fn free_space(&self, path: &Path) -> Result<u64> {
        let mut dir = path;
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        let fs = nix::sys::statvfs::statvfs(dir)
            .map_err(|e| Error::io(format!("reading free space of {}", dir.display()), e.into()))?;
        Ok(fs.blocks_available() as u64 * fs.fragment_size() as u64)
    }

    fn cpus(&self) -> u32 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    }

    fn memory_bytes(&self) -> Result<u64> {
        nix::sys::sysinfo::sysinfo()
            .map(|i| i.ram_total())
            .map_err(|e| Error::io("reading host memory", e.into()))
    }

    fn bridge_port_forwarding(&self, dev: &str) -> Option<bool> {
        if !crate::instance::is_interface_name(dev) {
            return None;
        }
        let state = std::fs::read_to_string(format!("{SYS_NET}/{dev}/brport/state")).ok()?;
        // Linux's BR_STATE_FORWARDING.
        Some(state.trim() == "3")
    }
}

/// What resource requests are resolved against: the host's CPUs and memory, and the free
/// space where instance disks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
}

impl Capacity {
    /// No cap: for instances elsewhere (a remote), whose resources this host cannot judge;
    /// the remote refuses what it cannot give.
    pub fn unbounded() -> Capacity {
        Capacity {
            cpus: u32::MAX,
            memory_bytes: u64::MAX,
            disk_free_bytes: u64::MAX,
        }
    }

    /// Reads them from `host`, with free space measured at `storage_dir`.
    pub fn probe(host: &dyn HostFacts, storage_dir: &Path) -> Result<Capacity> {
        Ok(Capacity {
            cpus: host.cpus(),
            memory_bytes: host.memory_bytes()?,
            disk_free_bytes: host.free_space(storage_dir)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn passwords_macs_and_uuids_come_from_the_host_randomness() {
        let real: &dyn HostFacts = &LocalHost;
        let a = real.random_password().unwrap();
        assert_eq!(a.len(), 20);
        // Built in one buffer: no outgrown (and so unwiped) copy of its first characters.
        assert_eq!(a.capacity(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, real.random_password().unwrap());

        let fake = FakeHost::default();
        let fake: &dyn HostFacts = &fake;
        assert_eq!(
            fake.random_mac([0x52, 0x54, 0]).unwrap(),
            "52:54:00:00:01:02"
        );
        let u = fake.random_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "{u}");
    }

    #[test]
    fn the_local_host_has_loopback() {
        let ifaces = LocalHost.interfaces().unwrap();
        assert!(ifaces
            .iter()
            .any(|i| i.name == "lo" && i.kind == InterfaceKind::Loopback));
        assert!(LocalHost.free_space(Path::new("/nonexistent/dir")).unwrap() > 0);
    }
}
