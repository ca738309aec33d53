//! `nox list` and `nox status`.

use nox_core::instance::Instance;
use nox_core::{Error, InstanceName, Result};

use crate::context::Context;

/// Every instance of every backend that answered, by name, and the errors of those that did
/// not.
#[derive(Debug)]
pub struct Listing {
    pub instances: Vec<Instance>,
    pub unreachable: Vec<Error>,
}

/// One backend down still lists the others' instances, with its error beside them; only
/// when none answers is it a failure.
pub fn list(ctx: &Context) -> Result<Listing> {
    let mut instances = Vec::new();
    let mut unreachable = Vec::new();
    let mut asked = 0;
    for b in ctx.backends.all() {
        asked += 1;
        match b.list() {
            Ok(list) => instances.extend(list),
            Err(e) => unreachable.push(e),
        }
    }
    if asked > 0 && unreachable.len() == asked {
        return Err(unreachable.remove(0));
    }
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing {
        instances,
        unreachable,
    })
}

pub fn status(ctx: &Context, name: &InstanceName) -> Result<Instance> {
    ctx.backends.find(name)?.status(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend};
    use nox_core::BackendKind;

    #[test]
    fn one_backend_down_still_lists_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.set_unreachable("cannot connect to libvirtd");
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("b");
        lxc.add_instance("a");
        let ctx = context(dir.path(), vec![Box::new(vm.clone()), Box::new(lxc)]);
        let l = list(&ctx).unwrap();
        let names: Vec<_> = l.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.unreachable.len(), 1);
        // All down: the first reason is the error.
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        assert!(list(&ctx).unwrap_err().to_string().contains("libvirtd"));
    }
}
