//! `nox list` and `nox status`.

use nox_core::instance::Instance;
use nox_core::{Error, InstanceRef, Result};

use crate::context::Context;

/// Every instance of every backend that answered, by name, and the errors of those that did
/// not.
#[derive(Debug)]
pub struct Listing {
    pub instances: Vec<Instance>,
    pub unreachable: Vec<Error>,
}

/// Every backend is asked at once (a remote's answer does not wait for libvirt's), and a
/// remote that does not answer within its client's timeout is reported, not waited for. One
/// backend down still lists the others' instances, with its error beside them; only when
/// none answers is it a failure.
pub fn list(ctx: &Context) -> Result<Listing> {
    let backends: Vec<_> = ctx.backends.all().collect();
    let answers: Vec<Result<Vec<Instance>>> = std::thread::scope(|s| {
        let handles: Vec<_> = backends.iter().map(|b| s.spawn(move || b.list())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failure("listing a backend panicked")))
            })
            .collect()
    });
    let mut instances = Vec::new();
    let mut unreachable = Vec::new();
    for (b, answer) in backends.iter().zip(answers) {
        match (answer, b.remote()) {
            (Ok(list), _) => instances.extend(list),
            (Err(e), Some(remote)) => unreachable.push(Error::failed(
                format!("remote {remote} did not answer: {e}"),
                "check that it is up; `nox remote list` shows its address",
            )),
            (Err(e), None) => unreachable.push(e),
        }
    }
    if !backends.is_empty() && unreachable.len() == backends.len() {
        return Err(unreachable.remove(0));
    }
    instances.sort_by(|a, b| (&a.remote, &a.name).cmp(&(&b.remote, &b.name)));
    // A remote's backends share one server: its failure is said once.
    unreachable.dedup_by(|a, b| a.to_string() == b.to_string());
    Ok(Listing {
        instances,
        unreachable,
    })
}

pub fn status(ctx: &Context, r: &InstanceRef) -> Result<Instance> {
    ctx.backends.find(r)?.status(&r.name)
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
