//! `nox create`: from what the user asked for to a ready instance, its launch scripts run.
//!
//! Everything that can be refused is refused before anything exists: contradicting flags,
//! scripts and their secrets, the network, resources against the host, a taken name, the
//! backend's own preflight. Only then is a privileged container confirmed, and created.

use std::time::Duration;

use nox_core::backend::CreateOptions;
use nox_core::host::{Capacity, HostFacts, InterfaceKind};
use nox_core::instance::{Instance, NetworkSpec};
use nox_core::script::Secret;
use nox_core::spec::{self, Kind};
use nox_core::state::{Intent, Operation};
use nox_core::{ssh_identity, BackendKind, Error, InstanceRef, RemoteName, Result};

use crate::context::Context;
use crate::scripts::Plan;
use crate::ui::Ui;

/// What `nox create` was asked beyond the config's `[defaults]` (which already carry the
/// resource, image, network, user and key flags as their top layer).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `NAME`, or `REMOTE:NAME` for an instance on a remote.
    pub name: Option<InstanceRef>,
    /// `--remote`: the same as `REMOTE:` in front of the name.
    pub remote: Option<RemoteName>,
    /// `--target`: the cluster member to place the instance on (remotes only).
    pub target: Option<String>,
    /// `--backend`, when given.
    pub backend: Option<BackendKind>,
    pub privileged: bool,
    /// `--yes`: the privileged warning is confirmed without a prompt.
    pub yes: bool,
    pub no_tun: bool,
    pub nesting: bool,
    /// `--disk` was given (containers have no disk of their own).
    pub disk_given: bool,
    /// `--script` arguments, in order.
    pub scripts: Vec<String>,
    /// `TS_AUTHKEY` from the environment (not yet checked).
    pub ts_authkey: Option<Secret>,
    pub start: bool,
    /// Wait this long for readiness; `None` returns once started.
    pub wait: Option<Duration>,
    /// The caller prints JSON on stdout: script output goes to stderr.
    pub json: bool,
    /// `--mount HOST_DIR:GUEST_DIR[:ro]` values, unchecked.
    pub mounts: Vec<String>,
    /// `--cold-boot`: boot the VM, never restore a template.
    pub cold_boot: bool,
}

/// Creates the instance, calls `created` with it (so the caller can say so before scripts
/// run), then runs the launch scripts. A failing script leaves the instance as it is, for
/// inspection; the error says where the log is.
pub fn create(
    ctx: &Context,
    req: &CreateRequest,
    ui: &dyn Ui,
    created: &mut dyn FnMut(&Instance),
) -> Result<Instance> {
    let at = placement(req)?;
    let name = at.name.clone();
    let config = &ctx.config;
    let kind = spec::choose_backend(req.backend, req.privileged, config.defaults.backend)?;
    refuse_contradictions(req, kind)?;
    // Scripts and the Tailscale key are checked before anything exists.
    let plan = Plan::resolve(&req.scripts, config, req.ts_authkey.clone())?;
    let backend = ctx.backends.get(at.remote(), kind)?;
    if req.cold_boot && backend.remote().is_some() {
        return Err(Error::Usage(
            "--cold-boot applies to this host's VMs; a remote boots its instances itself".into(),
        ));
    }
    if req.target.is_some() && backend.remote().is_none() {
        return Err(Error::Usage(
            "--target places an instance on a cluster member: it needs --remote (or REMOTE:NAME)"
                .into(),
        ));
    }
    let mut defaults = config.defaults.clone();
    if defaults.network == NetworkSpec::Ask {
        if at.remote().is_some() {
            return Err(Error::Usage(
                "--network ask picks among this host's networks; for a remote give --network default or bridge:NAME".into(),
            ));
        }
        defaults.network = ask_network(kind, &*ctx.host.facts, ui)?;
    }
    let capacity = match at.remote() {
        Some(remote) => {
            refuse_shares(
                remote,
                defaults.cpus.is_share(),
                defaults.memory.is_share(),
                defaults.disk.is_share(),
            )?;
            Capacity::unbounded()
        }
        None => ctx.host.capacity(&config.vm.storage_dir)?,
    };
    let nesting = kind == BackendKind::Lxc && (req.nesting || plan.needs_nesting());
    let mut spec = spec::resolve(
        name,
        Kind {
            backend: kind,
            privileged: req.privileged,
            tun: config.lxc.tun && !req.no_tun,
            nesting,
        },
        &defaults,
        &capacity,
        ctx.home.as_deref(),
    )?;
    spec.mounts = crate::mounts::for_create(at.remote(), &req.mounts)?;
    // From here to the end, no other nox command makes or changes this name: a second
    // create of it is refused at once, not after a timeout.
    let exclusive = crate::exclusive::lock_new(ctx, &at, "create", ui)?;
    // Names are unique across the backends of one place: `nox exec NAME` must find one
    // instance. A backend that cannot be asked (libvirtd down) must not stop a container
    // from being created.
    if let (Some(other), _) = ctx.backends.locate(&at) {
        return Err(Error::AlreadyExists {
            name: at.to_string(),
            backend: other.kind().to_string(),
        });
    }
    if nesting && !req.nesting {
        ui.note(&format!(
            "note: enabling nesting in container {} for Docker (LXC's nesting.conf lines)",
            spec.name
        ));
    }
    // nox's own key, so `nox ssh` logs in whatever the user's ~/.ssh holds.
    if let Some(data) = &ctx.data_dir {
        spec.ssh_keys
            .push(ssh_identity::ensure(data, &*ctx.host.facts)?);
    }
    // Everything checkable is checked before the question, so a "yes" never meets an error
    // the user could have been told first.
    backend.preflight(&spec)?;
    if spec.privileged {
        confirm_privileged(ui, req.yes)?;
    }
    let intent = exclusive.begin(&Intent::new(Operation::Create, kind))?;
    nox_core::fault::point("create.begun");
    let instance = backend.create(
        &spec,
        CreateOptions {
            start: req.start,
            wait: req.wait.is_some(),
            timeout: req.wait.unwrap_or(Duration::from_secs(600)),
            target: req.target.clone(),
            cold_boot: req.cold_boot,
        },
        ui.progress(),
    )?;
    nox_core::fault::point("create.made");
    // The instance is whole: a kill from here on must not take it away, only what the
    // scripts leave in the guest.
    drop(intent);
    created(&instance);
    if !plan.is_empty() {
        let _intent = exclusive.begin(&Intent::new(Operation::Run, kind))?;
        crate::scripts::run_plan(ctx, backend, &at, &spec.user, &plan, req.json, ui)?;
    }
    Ok(instance)
}

/// Where the instance goes: `REMOTE:NAME` and `--remote` say the same, or one of them does.
fn placement(req: &CreateRequest) -> Result<InstanceRef> {
    let name = req
        .name
        .clone()
        .ok_or_else(|| Error::Usage("create needs a NAME".into()))?;
    match (&name.remote, &req.remote) {
        (Some(a), Some(b)) if a != b => Err(Error::Usage(format!(
            "{name} names remote {a} but --remote says {b}: give one of them"
        ))),
        (None, Some(r)) => Ok(InstanceRef {
            remote: Some(r.clone()),
            name: name.name,
        }),
        _ => Ok(name),
    }
}

/// A share (`50%`) is of this host's resources, which mean nothing for an instance on a remote.
pub fn refuse_shares(remote: &str, cpus: bool, memory: bool, disk: bool) -> Result<()> {
    let shares: Vec<&str> = [("--cpus", cpus), ("--memory", memory), ("--disk", disk)]
        .into_iter()
        .filter(|(_, s)| *s)
        .map(|(f, _)| f)
        .collect();
    if shares.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} on remote {remote} must be an amount (2, 4G), not a share of this host (or of [defaults])",
        shares.join(" and ")
    )))
}

/// Flags that make no sense together, or for the backend chosen.
fn refuse_contradictions(req: &CreateRequest, kind: BackendKind) -> Result<()> {
    let refuse = |m: &str| Err(Error::Usage(m.into()));
    if kind == BackendKind::Vm && req.no_tun {
        return refuse("--no-tun applies to containers; VMs always have their own TUN");
    }
    if kind == BackendKind::Lxc && req.disk_given {
        return refuse("--disk applies to VMs; a container's root is an overlay on the host's filesystem, with no size of its own");
    }
    if req.privileged && req.no_tun {
        return refuse(
            "--no-tun applies to unprivileged containers; privileged ones see the host's /dev/net",
        );
    }
    if kind == BackendKind::Lxc && req.cold_boot {
        return refuse(
            "--cold-boot applies to VMs; a container always starts cold, in about a second",
        );
    }
    if kind == BackendKind::Vm && req.nesting {
        return refuse("--nesting applies to containers; a VM runs Docker as it is");
    }
    if !req.scripts.is_empty() && (!req.start || req.wait.is_none()) {
        return refuse("--script runs in a ready instance: leave out --no-start and --no-wait, or use `nox run` later");
    }
    Ok(())
}

/// The networks `--network ask` offers for `kind` on this host, with their labels.
pub fn network_choices(
    kind: BackendKind,
    host: &dyn HostFacts,
) -> Result<Vec<(String, NetworkSpec)>> {
    let mut choices: Vec<(String, NetworkSpec)> =
        vec![("default: NAT behind the host".into(), NetworkSpec::Default)];
    if kind == BackendKind::Vm {
        choices.push((
            "user: passt, SSH forwarded on 127.0.0.1".into(),
            NetworkSpec::User,
        ));
    }
    for i in host.interfaces()? {
        match i.kind {
            InterfaceKind::Bridge => choices.push((
                format!("bridge:{}", i.name),
                NetworkSpec::Bridge(i.name.clone()),
            )),
            InterfaceKind::Physical if kind == BackendKind::Vm => choices.push((
                format!("macvtap:{} (LAN; the host cannot reach the guest)", i.name),
                NetworkSpec::Macvtap(i.name.clone()),
            )),
            _ => {}
        }
    }
    Ok(choices)
}

/// `--network ask`: a picker on a terminal, never a prompt without one.
pub(crate) fn ask_network(
    kind: BackendKind,
    host: &dyn HostFacts,
    ui: &dyn Ui,
) -> Result<NetworkSpec> {
    if !ui.interactive() {
        return Err(Error::Usage(
            "--network ask needs an interactive terminal; give --network default, user, bridge:NAME or macvtap:IFACE".into(),
        ));
    }
    let choices = network_choices(kind, host)?;
    let labels: Vec<String> = choices.iter().map(|(l, _)| l.clone()).collect();
    let pick = ui.select("Network", &labels, 0)?;
    pick.and_then(|i| choices.into_iter().nth(i))
        .map(|(_, network)| network)
        .ok_or_else(|| Error::Usage("no network chosen".into()))
}

pub const PRIVILEGED_WARNING: &str = "\
WARNING: a privileged container is not isolated from this host.
  - root in the container is root on the host, with full capabilities;
  - it can reach host devices;
  - software in it can escape to the host;
  - it belongs only with trusted software on a dedicated host.
An unprivileged container (the default) also gets /dev/net/tun, so Tailscale works there too.";

/// The warning, then `Continue? [y/N]`; never a prompt without a terminal. Restoring a
/// privileged container asks the same.
pub fn confirm_privileged(ui: &dyn Ui, yes: bool) -> Result<()> {
    ui.note(PRIVILEGED_WARNING);
    if yes {
        return Ok(());
    }
    if !ui.interactive() {
        return Err(Error::Usage(
            "refusing to create a privileged container without confirmation: run nox on a terminal to answer, or pass --yes".into(),
        ));
    }
    if ui.confirm("Continue?")? {
        Ok(())
    } else {
        Err(Error::failed(
            "not confirmed: nothing was created",
            "leave out --privileged for an unprivileged container",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};

    fn request(name: &str) -> CreateRequest {
        CreateRequest {
            name: Some(name.parse().unwrap()),
            start: true,
            wait: Some(Duration::from_secs(60)),
            ..Default::default()
        }
    }

    fn setup(dir: &std::path::Path) -> (Context, FakeBackend, FakeBackend) {
        let vm = FakeBackend::new(BackendKind::Vm);
        let lxc = FakeBackend::new(BackendKind::Lxc);
        let ctx = context(dir, vec![Box::new(vm.clone()), Box::new(lxc.clone())]);
        (ctx, vm, lxc)
    }

    #[test]
    fn the_default_is_a_vm_with_the_defaults_resolved_against_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, vm, lxc) = setup(dir.path());
        let mut announced = Vec::new();
        let inst = create(&ctx, &request("web"), &FakeUi::default(), &mut |i| {
            announced.push(i.name.clone())
        })
        .unwrap();
        assert_eq!(inst.backend, BackendKind::Vm);
        assert_eq!(announced, ["web"]);
        let spec = vm.created().pop().unwrap();
        assert_eq!(spec.backend, BackendKind::Vm);
        assert!(!spec.privileged && !spec.tun && !spec.nesting);
        // nox's own key is always among the guest's keys.
        assert!(
            spec.ssh_keys.iter().any(|k| k.ends_with(" nox")),
            "{:?}",
            spec.ssh_keys
        );
        assert!(lxc.created().is_empty());
        assert_eq!(vm.calls(), ["preflight web", "create web"]);
    }

    #[test]
    fn containers_get_tun_unless_told_otherwise_and_docker_gets_nesting() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, lxc) = setup(dir.path());
        let mut r = request("box");
        r.backend = Some(BackendKind::Lxc);
        create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap();
        assert!(lxc.created()[0].tun);

        let mut r = request("box2");
        r.backend = Some(BackendKind::Lxc);
        r.no_tun = true;
        create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap();
        assert!(!lxc.created()[1].tun);

        lxc.set_probe_output(DOCKER_OK);
        let mut r = request("dock");
        r.backend = Some(BackendKind::Lxc);
        r.scripts = vec!["docker".into()];
        let ui = FakeUi::default();
        create(&ctx, &r, &ui, &mut |_| {}).unwrap();
        assert!(lxc.created()[2].nesting);
        assert!(
            ui.notes().iter().any(|n| n.contains("enabling nesting")),
            "{:?}",
            ui.notes()
        );
    }

    #[test]
    fn contradictions_are_refused_before_anything_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, vm, lxc) = setup(dir.path());
        type Change = Box<dyn Fn(&mut CreateRequest)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|r| r.no_tun = true),
                "--no-tun applies to containers",
            ),
            (
                Box::new(|r| {
                    r.backend = Some(BackendKind::Lxc);
                    r.disk_given = true
                }),
                "--disk applies to VMs",
            ),
            (
                Box::new(|r| {
                    r.privileged = true;
                    r.no_tun = true
                }),
                "--no-tun applies to unprivileged",
            ),
            (
                Box::new(|r| r.nesting = true),
                "--nesting applies to containers",
            ),
            (
                Box::new(|r| {
                    r.scripts = vec!["docker".into()];
                    r.wait = None
                }),
                "--script runs in a ready instance",
            ),
            (
                Box::new(|r| {
                    r.privileged = true;
                    r.backend = Some(BackendKind::Vm)
                }),
                "VMs are isolated by design",
            ),
            (
                Box::new(|r| r.scripts = vec!["/nonexistent.sh".into()]),
                "neither a built-in",
            ),
        ];
        for (change, want) in cases {
            let mut r = request("web");
            change(&mut r);
            let e = create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap_err();
            assert!(e.is_bad_input(), "{e}");
            assert!(e.to_string().contains(want), "{e} (want {want})");
        }
        assert!(vm.calls().is_empty() && lxc.calls().is_empty());
    }

    #[test]
    fn a_name_taken_in_any_backend_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, vm, lxc) = setup(dir.path());
        lxc.add_instance("web");
        let e = create(&ctx, &request("web"), &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
        assert!(vm.created().is_empty());
    }

    #[test]
    fn resources_are_checked_against_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, vm, _) = setup(dir.path());
        ctx.config.defaults.cpus = "8".parse().unwrap();
        let e = create(&ctx, &request("web"), &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("this host has 4 CPUs"), "{e}");
        ctx.config.defaults.cpus = "50%".parse().unwrap();
        ctx.config.defaults.memory = "25%".parse().unwrap();
        create(&ctx, &request("web"), &FakeUi::default(), &mut |_| {}).unwrap();
        let spec = vm.created().pop().unwrap();
        assert_eq!((spec.cpus, spec.memory_bytes), (2, 2 << 30));
    }

    #[test]
    fn privileged_is_checked_then_confirmed_and_never_without_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, lxc) = setup(dir.path());
        let mut r = request("root");
        r.privileged = true;

        // No terminal: refused, after the backend's checks, before creation.
        let e = create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("without confirmation"),
            "{e}"
        );
        assert_eq!(lxc.calls(), ["preflight root"]);

        // A "no" on a terminal: nothing created.
        let ui = FakeUi::interactive(vec![false]);
        let e = create(&ctx, &r, &ui, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("not confirmed"), "{e}");
        assert!(ui.notes()[0].starts_with("WARNING: a privileged container"));
        assert!(lxc.created().is_empty());

        // A failing preflight is said before the question is asked.
        lxc.fail_preflight("the bridge for privileged containers, br9, does not exist");
        let ui = FakeUi::interactive(vec![true]);
        let e = create(&ctx, &r, &ui, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("br9"), "{e}");
        assert!(ui.notes().is_empty(), "no warning before a refusal");
        lxc.fail_preflight("");

        // "yes": a privileged container without TUN of its own.
        let ui = FakeUi::interactive(vec![true]);
        create(&ctx, &r, &ui, &mut |_| {}).unwrap();
        let spec = lxc.created().pop().unwrap();
        assert!(spec.privileged && !spec.tun);
        r.name = Some("root2".parse().unwrap());
        r.yes = true;
        create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap();
    }

    #[test]
    fn the_network_picker_offers_what_this_host_has() {
        let host = nox_core::host::fake::FakeHost::default();
        let labels = |k| {
            network_choices(k, &host)
                .unwrap()
                .into_iter()
                .map(|(l, _)| l)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(BackendKind::Vm),
            [
                "default: NAT behind the host",
                "user: passt, SSH forwarded on 127.0.0.1",
                "bridge:br0",
                "macvtap:eth0 (LAN; the host cannot reach the guest)",
                "bridge:lxcbr0"
            ]
        );
        assert_eq!(
            labels(BackendKind::Lxc),
            [
                "default: NAT behind the host",
                "bridge:br0",
                "bridge:lxcbr0"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, vm, _) = setup(dir.path());
        ctx.config.defaults.network = NetworkSpec::Ask;
        let e = create(&ctx, &request("web"), &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(
            e.to_string().contains("needs an interactive terminal"),
            "{e}"
        );
        let ui = FakeUi::interactive(vec![]).selecting(2);
        create(&ctx, &request("web"), &ui, &mut |_| {}).unwrap();
        assert_eq!(vm.created()[0].network, NetworkSpec::Bridge("br0".into()));
    }

    #[test]
    fn a_remote_instance_goes_to_its_remote_and_only_remotes_take_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let local = FakeBackend::new(BackendKind::Lxc);
        let remote = FakeBackend::new(BackendKind::Lxc).on_remote("cluster");
        let ctx = context(
            dir.path(),
            vec![Box::new(local.clone()), Box::new(remote.clone())],
        );
        let mut r = request("web");
        r.backend = Some(BackendKind::Lxc);
        r.remote = Some("cluster".parse().unwrap());
        r.target = Some("member2".into());
        create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap();
        assert_eq!(remote.calls(), ["preflight web", "create web on member2"]);
        // The same name on this host is another instance.
        let mut l = request("web");
        l.backend = Some(BackendKind::Lxc);
        create(&ctx, &l, &FakeUi::default(), &mut |_| {}).unwrap();
        assert_eq!(local.created().len(), 1);
        // cluster:web exists now; REMOTE:NAME means the same as --remote.
        let mut again = request("cluster:web");
        again.backend = Some(BackendKind::Lxc);
        let e = create(&ctx, &again, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("cluster:web"), "{e}");
        // --target without a remote, and two remotes that disagree, are refused.
        let mut t = request("db");
        t.backend = Some(BackendKind::Lxc);
        t.target = Some("member2".into());
        let e = create(&ctx, &t, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("--target"), "{e}");
        let mut both = request("cluster:db");
        both.remote = Some("other".parse().unwrap());
        let e = create(&ctx, &both, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("give one of them"), "{e}");
        let mut unknown = request("db");
        unknown.remote = Some("nowhere".parse().unwrap());
        let e = create(&ctx, &unknown, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("no remote named"), "{e}");
    }

    /// What the compatibility probe prints in a container where Docker can run.
    const DOCKER_OK: &str = include_str!("../testdata/probe-lxc-docker-ok.txt");

    #[test]
    fn a_remote_instance_is_not_held_to_this_host_s_resources() {
        let dir = tempfile::tempdir().unwrap();
        let remote = FakeBackend::new(BackendKind::Lxc).on_remote("cluster");
        let (mut ctx, _, _) = setup(dir.path());
        ctx.backends = crate::Backends::new(vec![Box::new(remote.clone())]);
        ctx.config.defaults.cpus = "16".parse().unwrap();
        let mut r = request("cluster:big");
        r.backend = Some(BackendKind::Lxc);
        create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap();
        assert_eq!(remote.created()[0].cpus, 16, "the fake host has 4");
        ctx.config.defaults.memory = "50%".parse().unwrap();
        let mut r = request("cluster:half");
        r.backend = Some(BackendKind::Lxc);
        let e = create(&ctx, &r, &FakeUi::default(), &mut |_| {}).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("--memory"),
            "{e}"
        );
    }
}
