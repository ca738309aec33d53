//! One module per verb (or family of verbs), each a short function over the library crates.

pub mod access;
pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
pub mod create;
pub mod doctor;
pub mod image;
pub mod lifecycle;
pub mod list;
pub mod resize;
pub mod scripts;

use nox_core::config::{self as core_config, ConfigFiles, LoadedConfig, Override};
use nox_core::{Backend, BackendKind, Config, Error, InstanceName};
use nox_libvirt::LibvirtBackend;
use nox_lxc::LxcBackend;

/// Loads the layered config from the standard files and `NOX_CONFIG`, then `overrides`.
pub fn load_config(overrides: &[Override]) -> nox_core::Result<LoadedConfig> {
    core_config::load(&ConfigFiles::from_env(), overrides)
}

/// The backend that runs instances of `kind`.
pub fn backend(kind: BackendKind, config: &Config) -> Result<Box<dyn Backend>, Error> {
    match kind {
        BackendKind::Vm => Ok(Box::new(LibvirtBackend::new(config.clone()))),
        BackendKind::Lxc => Ok(Box::new(LxcBackend::new(config.clone()))),
    }
}

/// Every backend that can hold instances.
pub fn backends(config: &Config) -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(LibvirtBackend::new(config.clone())),
        Box::new(LxcBackend::new(config.clone())),
    ]
}

/// The backend holding `name`, and the first error of a backend that could not be asked.
pub fn locate(config: &Config, name: &InstanceName) -> (Option<Box<dyn Backend>>, Option<Error>) {
    let mut failure = None;
    for b in backends(config) {
        match b.owns(name) {
            Ok(true) => return (Some(b), None),
            Ok(false) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (None, failure)
}

/// The backend holding the instance called `name`. When no backend has it and one could not
/// be asked (libvirtd down), that is the error to report, not "no such instance".
pub fn find(config: &Config, name: &InstanceName) -> Result<Box<dyn Backend>, Error> {
    match locate(config, name) {
        (Some(b), _) => Ok(b),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::NotFound {
            name: name.to_string(),
        }),
    }
}

/// Runs `f` for each name, going on past failures; the first error is returned at the end,
/// after each failure was reported on its own line.
pub fn for_each(
    names: &[InstanceName],
    mut f: impl FnMut(&InstanceName) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut first = None;
    let many = names.len() > 1;
    for n in names {
        if let Err(e) = f(n) {
            if many {
                eprintln!("error: {n}: {e}");
            }
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
