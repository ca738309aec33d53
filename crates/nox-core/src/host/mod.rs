//! The seam between nox and the machine it runs on.
//!
//! Everything nox learns from the host or asks of it outside the backends' own APIs (libvirt,
//! liblxc) goes through [`Host`]:
//! - [`HostFacts`] (`facts.rs`): network interfaces and bridges, free space, CPUs, memory and
//!   randomness;
//! - [`Runner`] (`runner.rs`): the external programs, typed, with every exit status checked;
//! - [`ImageBuilder`]: images built here from a distribution's archive (`build:` sources).
//!
//! The real pair is [`Host::local`]; unit tests use the fakes in `fake.rs`.

pub mod facts;
#[cfg(any(test, feature = "fake-host"))]
pub mod fake;
pub mod runner;

use std::sync::Arc;

use crate::image_build::{ImageBuilder, NoBuilder};

pub use facts::{Capacity, HostFacts, Interface, InterfaceKind, LocalHost};
pub use runner::{Cmd, Finished, PrivateMount, Runner, Stdin, Stdout, SystemRunner};

/// The host as the backends and workflows see it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Host {
    pub facts: Arc<dyn HostFacts>,
    pub runner: Arc<dyn Runner>,
    pub builder: Arc<dyn ImageBuilder>,
}

impl Host {
    /// This machine.
    pub fn local() -> Host {
        Host {
            facts: Arc::new(LocalHost),
            runner: Arc::new(SystemRunner),
            builder: Arc::new(NoBuilder),
        }
    }

    /// This host, building images with `builder`.
    pub fn with_builder(mut self, builder: Arc<dyn ImageBuilder>) -> Host {
        self.builder = builder;
        self
    }

    /// The host's CPUs, memory and the free space at `storage_dir`.
    pub fn capacity(&self, storage_dir: &std::path::Path) -> crate::Result<Capacity> {
        Capacity::probe(&*self.facts, storage_dir)
    }
}

#[cfg(any(test, feature = "fake-host"))]
impl Host {
    /// Fakes of both, returned too so a test can set them up and read what was run.
    pub fn fake() -> (Host, Arc<fake::FakeHost>, Arc<fake::FakeRunner>) {
        let facts = Arc::new(fake::FakeHost::default());
        let runner = Arc::new(fake::FakeRunner::default());
        (
            Host {
                facts: facts.clone(),
                runner: runner.clone(),
                builder: Arc::new(NoBuilder),
            },
            facts,
            runner,
        )
    }
}
