//! `nox exec|ssh|console|passwd|resize`.

use nox_core::backend::{Handoff, Resize};
use nox_core::host::Cmd;
use nox_core::resources::{CpuRequest, DiskRequest, MemoryRequest};
use nox_core::secret::Password;
use nox_core::{Error, InstanceRef, Result};

use crate::context::Context;
use crate::ui::Ui;

/// Runs `argv` in `name` as root, its output streamed to ours; returns the exit code nox
/// exits with (an exit code the guest could not tell, -1, is a failure, never success).
pub fn exec(ctx: &Context, r: &InstanceRef, argv: &[String]) -> Result<u8> {
    let code = ctx.backends.find(r)?.exec(&r.name, argv)?;
    Ok(if code < 0 { 1 } else { code.min(255) as u8 })
}

/// Replaces nox with an SSH session into `name` (or `command` there). Returns only when that
/// could not start.
pub fn ssh(ctx: &Context, r: &InstanceRef, command: &[String], ui: &dyn Ui) -> Error {
    match ctx.backends.find(r).and_then(|b| b.ssh(&r.name, command)) {
        Ok(h) => hand_off(ctx, h, ui),
        Err(e) => e,
    }
}

/// Replaces nox with `name`'s serial console.
pub fn console(ctx: &Context, r: &InstanceRef, ui: &dyn Ui) -> Error {
    match ctx.backends.find(r).and_then(|b| b.console(&r.name)) {
        Ok(h) => hand_off(ctx, h, ui),
        Err(e) => e,
    }
}

fn hand_off(ctx: &Context, h: Handoff, ui: &dyn Ui) -> Error {
    if let Some(note) = &h.note {
        ui.note(note);
    }
    let package = if h.program.ends_with("ssh") {
        "openssh-client"
    } else {
        "the program's package (libvirt-clients for virsh, lxc for lxc-attach)"
    };
    let cmd = Cmd::new(&h.program).args(&h.args).package(package);
    ctx.host.runner.replace_process(&cmd)
}

/// Sets a new random password for `user` (default: the instance's user) and returns the user
/// and the password. nox stores it nowhere.
pub fn passwd(
    ctx: &Context,
    r: &InstanceRef,
    user: Option<&str>,
    ui: &dyn Ui,
) -> Result<(String, Password)> {
    let _x = crate::exclusive::lock(ctx, r, "passwd", ui)?;
    let b = ctx.backends.find(r)?;
    let name = &r.name;
    let user = match user {
        Some(u) => u.to_string(),
        None => b
            .status(name)?
            .user
            .unwrap_or(ctx.config.defaults.user.clone()),
    };
    nox_core::spec::check_user(&user)?;
    let password = b.passwd(name, &user)?;
    Ok((user, password))
}

/// What `nox resize` asks for, as typed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResizeRequest {
    pub cpus: Option<CpuRequest>,
    pub memory: Option<MemoryRequest>,
    pub disk: Option<DiskRequest>,
    /// Restart so CPU and memory take effect now.
    pub restart: bool,
}

/// What resize did, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resized {
    Restarted,
    Done { note: String },
}

/// Resolves the request against the host and resizes `name`.
pub fn resize(ctx: &Context, at: &InstanceRef, r: ResizeRequest, ui: &dyn Ui) -> Result<Resized> {
    if r.cpus.is_none() && r.memory.is_none() && r.disk.is_none() {
        return Err(Error::Usage(
            "nothing to resize: give --cpus, --memory or --disk".into(),
        ));
    }
    let _x = crate::exclusive::lock(ctx, at, "resize", ui)?;
    let b = ctx.backends.find(at)?;
    let name = &at.name;
    let mut host = match at.remote() {
        Some(remote) => {
            crate::create::refuse_shares(
                remote,
                r.cpus.is_some_and(|c| c.is_share()),
                r.memory.is_some_and(|m| m.is_share()),
                r.disk.is_some_and(|d| d.is_share()),
            )?;
            nox_core::host::Capacity::unbounded()
        }
        None => ctx.host.capacity(&ctx.config.vm.storage_dir)?,
    };
    // Growing a disk needs only the growth in free space, not its whole new size.
    host.disk_free_bytes = host
        .disk_free_bytes
        .saturating_add(b.status(name)?.disk_bytes.unwrap_or(0));
    let resize = Resize {
        cpus: r.cpus.map(|c| c.resolve(&host)).transpose()?,
        memory_bytes: r.memory.map(|m| m.resolve(&host)).transpose()?,
        disk_bytes: r.disk.map(|d| d.resolve(&host)).transpose()?,
    };
    let note = b.resize(name, resize, ui.progress())?;
    if r.restart && (resize.cpus.is_some() || resize.memory_bytes.is_some()) {
        let p = ui.progress();
        b.stop(name, false, std::time::Duration::from_secs(60), p)?;
        b.start(name, Some(std::time::Duration::from_secs(600)), p)?;
        return Ok(Resized::Restarted);
    }
    Ok(Resized::Done { note })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};
    use nox_core::BackendKind;

    #[test]
    fn ssh_hands_the_terminal_over_through_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        let e = ssh(
            &ctx,
            &"web".parse().unwrap(),
            &["uname".into()],
            &FakeUi::default(),
        );
        assert!(
            e.to_string().contains("would hand over to ssh uname"),
            "{e}"
        );
        let e = ssh(&ctx, &"nope".parse().unwrap(), &[], &FakeUi::default());
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn resize_needs_something_and_restarts_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let web = "web".parse().unwrap();
        let ui = FakeUi::default();
        let e = resize(&ctx, &web, ResizeRequest::default(), &ui).unwrap_err();
        assert!(e.is_bad_input());
        let r = ResizeRequest {
            cpus: Some("2".parse().unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            resize(&ctx, &web, r, &ui).unwrap(),
            Resized::Done { .. }
        ));
        assert!(vm.calls().is_empty());
        let e = resize(
            &ctx,
            &web,
            ResizeRequest {
                cpus: Some("64".parse().unwrap()),
                ..r
            },
            &ui,
        )
        .unwrap_err();
        assert!(e.to_string().contains("this host has 4 CPUs"), "{e}");
        let r = ResizeRequest { restart: true, ..r };
        assert_eq!(resize(&ctx, &web, r, &ui).unwrap(), Resized::Restarted);
        assert_eq!(vm.calls(), ["stop web", "start web"]);
    }

    #[test]
    fn exit_codes_the_guest_could_not_tell_are_failures() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        vm.exit_code_for("false", -1);
        vm.exit_code_for("big", 300);
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        let web = "web".parse().unwrap();
        assert_eq!(exec(&ctx, &web, &["false".into()]).unwrap(), 1);
        assert_eq!(exec(&ctx, &web, &["big".into()]).unwrap(), 255);
        assert_eq!(exec(&ctx, &web, &["true".into()]).unwrap(), 0);
    }
}
