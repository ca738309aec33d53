//! Facts about the host that resource requests are resolved against.

use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// Total memory.
    pub memory_bytes: u64,
    /// Free space for an unprivileged writer on the filesystem that holds instance disks.
    pub disk_free_bytes: u64,
}

impl HostFacts {
    /// Reads the host's CPUs and memory, and the free space of the filesystem holding
    /// `storage_dir` (or its nearest existing parent, since the directory may not exist yet).
    pub fn probe(storage_dir: &Path) -> Result<Self> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let info =
            nix::sys::sysinfo::sysinfo().map_err(|e| Error::io("reading host memory", e.into()))?;
        let mut dir = storage_dir;
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        let fs = nix::sys::statvfs::statvfs(dir)
            .map_err(|e| Error::io(format!("reading free space of {}", dir.display()), e.into()))?;
        Ok(HostFacts {
            cpus,
            memory_bytes: info.ram_total(),
            disk_free_bytes: fs.blocks_available() as u64 * fs.fragment_size() as u64,
        })
    }
}
