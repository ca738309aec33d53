//! The backends this nox was built with, and which one holds an instance.

use nox_core::{Backend, BackendKind, Error, InstanceName, Result};

/// The backends, each for one [`BackendKind`]. A kind this nox was built without answers
/// "not built in" with the cargo feature that adds it, never a stub.
pub struct Backends {
    enabled: Vec<Box<dyn Backend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.enabled.iter().map(|b| b.kind()))
            .finish()
    }
}

impl Backends {
    pub fn new(enabled: Vec<Box<dyn Backend>>) -> Backends {
        Backends { enabled }
    }

    /// Every backend, in the order given.
    pub fn all(&self) -> impl Iterator<Item = &dyn Backend> {
        self.enabled.iter().map(|b| &**b)
    }

    /// The backend for `kind`.
    pub fn get(&self, kind: BackendKind) -> Result<&dyn Backend> {
        self.all().find(|b| b.kind() == kind).ok_or_else(|| {
            let built: Vec<String> = self.all().map(|b| b.kind().to_string()).collect();
            let alternative = match built.as_slice() {
                [] => String::new(),
                kinds => format!("use --backend {}, or ", kinds.join("|")),
            };
            Error::Usage(format!(
                "this nox was built without the {kind} backend: {alternative}rebuild it with the cargo feature `{kind}` (cargo install --path crates/nox-cli --features {kind})"
            ))
        })
    }

    /// The backend holding `name`, and the first error of a backend that could not be asked.
    pub fn locate(&self, name: &InstanceName) -> (Option<&dyn Backend>, Option<Error>) {
        let mut failure = None;
        for b in self.all() {
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

    /// The backend holding the instance called `name`. When no backend has it and one could
    /// not be asked (libvirtd down), that is the error to report, not "no such instance".
    pub fn find(&self, name: &InstanceName) -> Result<&dyn Backend> {
        match self.locate(name) {
            (Some(b), _) => Ok(b),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::NotFound {
                name: name.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeBackend;

    #[test]
    fn a_kind_not_built_in_says_which_feature_adds_it() {
        let b = Backends::new(vec![Box::new(FakeBackend::new(BackendKind::Lxc))]);
        assert!(b.get(BackendKind::Lxc).is_ok());
        let e = b.get(BackendKind::Vm).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("feature `vm`"), "{e}");
    }

    #[test]
    fn find_reports_a_backend_that_could_not_be_asked() {
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.set_unreachable("cannot connect to libvirtd");
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("box");
        let b = Backends::new(vec![Box::new(vm), Box::new(lxc)]);
        assert_eq!(
            b.find(&"box".parse().unwrap()).unwrap().kind(),
            BackendKind::Lxc
        );
        let e = b.find(&"web".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("libvirtd"), "{e}");
    }
}
