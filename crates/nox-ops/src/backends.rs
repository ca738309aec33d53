//! The backends this nox was built with, and which one holds an instance.

use nox_core::{Backend, BackendKind, Error, InstanceRef, Result};

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

    /// Every backend, local and remote, in the order given.
    pub fn all(&self) -> impl Iterator<Item = &dyn Backend> {
        self.enabled.iter().map(|b| &**b)
    }

    /// The backends at `remote` (`None`: this host).
    pub fn at<'a>(&'a self, remote: Option<&str>) -> impl Iterator<Item = &'a dyn Backend> + 'a {
        let remote = remote.map(String::from);
        self.all().filter(move |b| b.remote() == remote.as_deref())
    }

    /// The backend for `kind` at `remote` (`None`: this host).
    pub fn get(&self, remote: Option<&str>, kind: BackendKind) -> Result<&dyn Backend> {
        if let Some(r) = remote {
            self.known_remote(r)?;
            return self
                .at(Some(r))
                .find(|b| b.kind() == kind)
                .ok_or_else(|| Error::Usage(format!("remote {r} does not run {kind} instances")));
        }
        self.at(None).find(|b| b.kind() == kind).ok_or_else(|| {
            let built: Vec<String> = self.at(None).map(|b| b.kind().to_string()).collect();
            let alternative = match built.as_slice() {
                [] => String::new(),
                kinds => format!("use --backend {}, or ", kinds.join("|")),
            };
            Error::Usage(format!(
                "this nox was built without the {kind} backend: {alternative}rebuild it with the cargo feature `{kind}` (cargo install --path crates/nox-cli --features {kind})"
            ))
        })
    }

    fn known_remote(&self, remote: &str) -> Result<()> {
        if self.all().any(|b| b.remote() == Some(remote)) {
            return Ok(());
        }
        let mut known: Vec<&str> = self.all().filter_map(|b| b.remote()).collect();
        known.dedup();
        Err(Error::Usage(format!(
            "no remote named {remote:?} in [remotes]{}; `nox remote add {remote} URL --token TOKEN` adds one",
            if known.is_empty() {
                String::new()
            } else {
                format!(" (known: {})", known.join(", "))
            }
        )))
    }

    /// The backend holding `r`, and the first error of a backend there that could not be
    /// asked.
    pub fn locate(&self, r: &InstanceRef) -> (Option<&dyn Backend>, Option<Error>) {
        let mut failure = None;
        for b in self.cheapest_first(r.remote()) {
            match b.owns(&r.name) {
                Ok(true) => return (Some(b), None),
                Ok(false) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        (None, failure)
    }

    /// The backends at `remote`, those that answer `owns` cheapest first. A local container's
    /// `owns` is one `stat` of its record; a VM's connects to libvirtd and looks the domain
    /// up (about 10 ms), which a command on a container should not pay. Names are unique
    /// across backends (`create` refuses a taken one), so the order changes only the cost.
    fn cheapest_first<'a>(&'a self, remote: Option<&str>) -> Vec<&'a dyn Backend> {
        let mut order: Vec<&dyn Backend> = self.at(remote).collect();
        order.sort_by_key(|b| b.kind() != BackendKind::Lxc);
        order
    }

    /// The backend holding the instance `r` names. When no backend has it and one could
    /// not be asked (libvirtd down), that is the error to report, not "no such instance".
    pub fn find(&self, r: &InstanceRef) -> Result<&dyn Backend> {
        if let Some(remote) = r.remote() {
            self.known_remote(remote)?;
        }
        match self.locate(r) {
            (Some(b), _) => Ok(b),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::NotFound {
                name: r.to_string(),
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
        assert!(b.get(None, BackendKind::Lxc).is_ok());
        let e = b.get(None, BackendKind::Vm).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("feature `vm`"), "{e}");
        assert!(e.to_string().contains("--backend lxc"), "{e}");
        let e = b.get(Some("cluster"), BackendKind::Lxc).unwrap_err();
        assert!(e.to_string().contains("no remote named \"cluster\""), "{e}");
    }

    #[test]
    fn a_remote_instance_is_found_only_on_its_remote() {
        let local = FakeBackend::new(BackendKind::Lxc);
        local.add_instance("web");
        let remote = FakeBackend::new(BackendKind::Lxc).on_remote("cluster");
        remote.add_instance("db");
        let b = Backends::new(vec![Box::new(local), Box::new(remote)]);
        let find = |r: &str| {
            b.find(&r.parse().unwrap())
                .map(|b| b.remote().map(String::from))
        };
        assert_eq!(find("web").unwrap(), None);
        assert_eq!(find("cluster:db").unwrap().as_deref(), Some("cluster"));
        assert!(matches!(find("db").unwrap_err(), Error::NotFound { .. }));
        assert!(matches!(
            find("cluster:web").unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(find("other:web")
            .unwrap_err()
            .to_string()
            .contains("known: cluster"));
    }

    #[test]
    fn a_container_is_found_without_asking_the_vm_backend() {
        let vm = FakeBackend::new(BackendKind::Vm);
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("box");
        vm.add_instance("web");
        let b = Backends::new(vec![Box::new(vm.clone()), Box::new(lxc.clone())]);
        let found = b.find(&"box".parse().unwrap()).unwrap();
        assert_eq!(found.kind(), BackendKind::Lxc);
        assert_eq!(vm.owns_asked(), 0);
        // A VM is still found, after the one stat of the container backend.
        let found = b.find(&"web".parse().unwrap()).unwrap();
        assert_eq!(found.kind(), BackendKind::Vm);
        assert_eq!((lxc.owns_asked(), vm.owns_asked()), (2, 1));
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
