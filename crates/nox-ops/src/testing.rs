//! Fakes for the workflows' unit tests: a backend that records what it is asked and keeps
//! instances in memory, a UI with scripted answers, and a context over a temp directory with
//! the fake host. Pure logic only; the real backends are tested live.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nox_core::backend::{CreateOptions, ExecIo, Handoff, Resize};
use nox_core::backup::{
    file_entry, BackupBackend, BackupKind, BackupRequest, Consistency, LocalBackup, Manifest,
    RestoreOptions, FORMAT,
};
use nox_core::host::Host;
use nox_core::image::{CachedImage, ImageCache, ImageKind, TemplateRequest, TemplateShape, Warmed};
use nox_core::instance::{Instance, InstanceSpec, InstanceState, SshEndpoint};
use nox_core::progress::Quiet;
use nox_core::secret::Password;
use nox_core::state::Operation;
use nox_core::{Backend, BackendKind, Check, Config, Error, InstanceName, Progress, Result};

use crate::backends::Backends;
use crate::context::Context;
use crate::ui::Ui;

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, Instance>,
    unreachable: Option<String>,
    preflight_error: Option<String>,
    calls: Vec<String>,
    /// How many times `owns` was asked (kept apart from `calls`, which tests compare whole).
    owns_asked: usize,
    created: Vec<InstanceSpec>,
    execs: Vec<(Vec<String>, Vec<u8>)>,
    exit_codes: BTreeMap<String, i32>,
    probe_output: String,
    restored: Vec<Vec<String>>,
    /// The image cache, when this fake keeps one: each image, and the instance using it.
    images: Option<Vec<(CachedImage, Option<String>)>>,
}

/// A backend in memory. Clones share their state, so a test keeps one to look at.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    kind: BackendKind,
    remote: Option<String>,
    state: Arc<Mutex<State>>,
}

impl FakeBackend {
    pub fn new(kind: BackendKind) -> FakeBackend {
        FakeBackend {
            kind,
            remote: None,
            state: Arc::default(),
        }
    }

    /// The same fake, as a backend of remote `name`.
    pub fn on_remote(mut self, name: &str) -> FakeBackend {
        self.remote = Some(name.into());
        self
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn add_instance(&self, name: &str) {
        let mut i = instance(name, self.kind);
        i.remote = self.remote.clone();
        self.st().instances.insert(name.into(), i);
    }

    pub fn set_state(&self, name: &str, state: InstanceState) {
        if let Some(i) = self.st().instances.get_mut(name) {
            i.state = state;
        }
    }

    /// Every call fails as libvirtd down would.
    pub fn set_unreachable(&self, why: &str) {
        self.st().unreachable = Some(why.into());
    }

    /// `preflight` fails with `why` (empty: passes again).
    pub fn fail_preflight(&self, why: &str) {
        self.st().preflight_error = Some(why.to_string()).filter(|w| !w.is_empty());
    }

    /// `exec_with` of a command starting with `program` exits with `code`.
    pub fn exit_code_for(&self, program: &str, code: i32) {
        self.st().exit_codes.insert(program.into(), code);
    }

    /// What `sh -s` (the compatibility probe) prints.
    pub fn set_probe_output(&self, text: &str) {
        self.st().probe_output = text.into();
    }

    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// How many times `owns` was asked.
    pub fn owns_asked(&self) -> usize {
        self.st().owns_asked
    }

    pub fn created(&self) -> Vec<InstanceSpec> {
        self.st().created.clone()
    }

    /// Every `exec_with`: argv and stdin.
    pub fn execs(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        self.st().execs.clone()
    }

    /// The backup ids of each restored chain.
    pub fn restored(&self) -> Vec<Vec<String>> {
        self.st().restored.clone()
    }

    /// Gives this fake an image cache holding `images`: (name, checksum, size, the instance
    /// using it).
    pub fn with_images(self, images: &[(&str, &str, u64, Option<&str>)]) -> FakeBackend {
        let kind = self.kind;
        self.st().images = Some(
            images
                .iter()
                .map(|(name, sum, size, user)| {
                    (cached(name, sum, *size, kind), user.map(String::from))
                })
                .collect(),
        );
        self
    }

    fn reachable(&self) -> Result<()> {
        match &self.st().unreachable {
            Some(why) => Err(Error::failed(why.clone(), "start it")),
            None => Ok(()),
        }
    }

    fn get(&self, name: &InstanceName) -> Result<Instance> {
        self.reachable()?;
        self.st()
            .instances
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                name: name.to_string(),
            })
    }
}

pub fn instance(name: &str, kind: BackendKind) -> Instance {
    Instance {
        name: name.into(),
        backend: kind,
        state: InstanceState::Running,
        ipv4: vec![],
        cpus: 1,
        memory_bytes: 1 << 30,
        disk_bytes: None,
        autostart: true,
        image: "debian-12".into(),
        network: "default".into(),
        privileged: false,
        nesting: false,
        tailnet_ipv4: None,
        ssh: Some(SshEndpoint {
            user: "nox".into(),
            host: "127.0.0.1".into(),
            port: 22,
        }),
        created_at: "2026-11-26T00:00:00Z".into(),
        user: Some("nox".into()),
        remote: None,
        location: None,
        mounts: Vec::new(),
        forwards: Vec::new(),
    }
}

fn cached(name: &str, checksum: &str, size: u64, backend: BackendKind) -> CachedImage {
    CachedImage {
        name: name.into(),
        backend,
        checksum: checksum.into(),
        path: format!("/cache/{checksum}").into(),
        url: format!("file:///{name}"),
        size_bytes: size,
        virtual_size_bytes: size,
        kind: ImageKind::Base,
        shape: None,
        created_at: None,
    }
}

impl ImageCache for FakeBackend {
    fn list(&self) -> Result<Vec<CachedImage>> {
        self.reachable()?;
        let st = self.st();
        Ok(st.images.iter().flatten().map(|(i, _)| i.clone()).collect())
    }

    fn pull(&self, name: &str, _: &dyn Progress) -> Result<CachedImage> {
        self.reachable()?;
        self.st().calls.push(format!("pull {name}"));
        Ok(cached(name, "sha256:new", 1, self.kind))
    }

    fn add(
        &self,
        name: &str,
        source: &nox_core::config::ImageSource,
        _: &dyn Progress,
    ) -> Result<CachedImage> {
        self.reachable()?;
        self.st().calls.push(format!("add {name} {}", source.url));
        Ok(cached(name, "sha256:built", 1, self.kind))
    }

    fn remove(&self, which: &str) -> Result<Vec<CachedImage>> {
        self.reachable()?;
        let mut st = self.st();
        let images = st.images.get_or_insert_with(Vec::new);
        let hit = |i: &CachedImage| i.name == which || i.checksum == which;
        if let Some((_, Some(user))) = images.iter().find(|(i, u)| hit(i) && u.is_some()) {
            return Err(Error::Refused {
                message: format!("image {which} is the base of {user}"),
                hint: "delete it first".into(),
            });
        }
        let (gone, kept) = images.drain(..).partition(|(i, _)| hit(i));
        *images = kept;
        let gone: Vec<CachedImage> = gone.into_iter().map(|(i, _)| i).collect();
        if gone.is_empty() {
            return Err(Error::Refused {
                message: format!("no cached image {which:?}"),
                hint: "look".into(),
            });
        }
        Ok(gone)
    }

    /// A VM fake makes a template row of the request (and records it); others refuse as the
    /// trait does.
    fn warm(&self, request: &TemplateRequest, _: &dyn Progress) -> Result<Warmed> {
        if self.kind != BackendKind::Vm {
            return Err(Error::Usage("`image warm` is for VMs".into()));
        }
        self.reachable()?;
        self.st().calls.push(format!(
            "warm {} {} {} {} {}",
            request.image, request.cpus, request.memory_bytes, request.disk_bytes, request.network
        ));
        let mut row = cached(&request.image, "sha256:base", 1, self.kind);
        row.kind = ImageKind::Template;
        row.shape = Some(TemplateShape {
            key: "k".into(),
            cpus: request.cpus,
            memory_bytes: request.memory_bytes,
            disk_bytes: request.disk_bytes,
            network: request.network.to_string(),
            accel: "qemu".into(),
        });
        Ok(Warmed {
            built: true,
            template: row,
        })
    }

    fn prune(&self) -> Result<Vec<CachedImage>> {
        self.reachable()?;
        let mut st = self.st();
        let images = st.images.get_or_insert_with(Vec::new);
        let (gone, kept) = images.drain(..).partition(|(_, u)| u.is_none());
        *images = kept;
        Ok(gone.into_iter().map(|(i, _)| i).collect::<Vec<_>>())
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn image_cache(&self) -> Option<&dyn ImageCache> {
        self.st().images.as_ref()?;
        Some(self)
    }
    fn remote(&self) -> Option<&str> {
        self.remote.as_deref()
    }
    fn host_checks(&self) -> Vec<Check> {
        vec![Check::pass("fake", Some(self.kind), "fine")]
    }
    fn preflight(&self, spec: &InstanceSpec) -> Result<()> {
        self.st().calls.push(format!("preflight {}", spec.name));
        match self.st().preflight_error.clone() {
            Some(why) => Err(Error::failed(why, "fix it")),
            None => Ok(()),
        }
    }
    fn create(
        &self,
        spec: &InstanceSpec,
        options: CreateOptions,
        _: &dyn Progress,
    ) -> Result<Instance> {
        self.reachable()?;
        let mut st = self.st();
        match options.target {
            Some(t) => st.calls.push(format!("create {} on {t}", spec.name)),
            None => st.calls.push(format!("create {}", spec.name)),
        }
        st.created.push(spec.clone());
        let i = instance(spec.name.as_str(), self.kind);
        st.instances.insert(spec.name.to_string(), i.clone());
        Ok(i)
    }
    fn owns(&self, name: &InstanceName) -> Result<bool> {
        self.st().owns_asked += 1;
        self.reachable()?;
        Ok(self.st().instances.contains_key(name.as_str()))
    }
    fn list(&self) -> Result<Vec<Instance>> {
        self.reachable()?;
        Ok(self.st().instances.values().cloned().collect())
    }
    fn status(&self, name: &InstanceName) -> Result<Instance> {
        self.get(name)
    }
    fn start(&self, name: &InstanceName, _: Option<Duration>, _: &dyn Progress) -> Result<()> {
        self.get(name)?;
        self.st().calls.push(format!("start {name}"));
        self.set_state(name.as_str(), InstanceState::Running);
        Ok(())
    }
    fn stop(&self, name: &InstanceName, _: bool, _: Duration, _: &dyn Progress) -> Result<()> {
        self.get(name)?;
        self.st().calls.push(format!("stop {name}"));
        self.set_state(name.as_str(), InstanceState::Stopped);
        Ok(())
    }
    fn delete(&self, name: &InstanceName, _: bool) -> Result<()> {
        self.get(name)?;
        let mut st = self.st();
        st.calls.push(format!("delete {name}"));
        st.instances.remove(name.as_str());
        Ok(())
    }
    fn recover(&self, name: &InstanceName, operation: Operation) -> Result<Vec<String>> {
        let mut st = self.st();
        st.calls.push(format!("recover {name} {operation}"));
        match operation {
            Operation::Create | Operation::Restore | Operation::Delete => {
                Ok(match st.instances.remove(name.as_str()) {
                    Some(_) => vec![format!("removed {name}")],
                    None => Vec::new(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }
    fn exec(&self, name: &InstanceName, argv: &[String]) -> Result<i32> {
        self.exec_with(
            name,
            argv,
            ExecIo {
                stdin: &[],
                stdout: &mut std::io::sink(),
                stderr: &mut std::io::sink(),
            },
        )
    }
    fn exec_with(&self, name: &InstanceName, argv: &[String], io: ExecIo<'_>) -> Result<i32> {
        if self.get(name)?.state != InstanceState::Running {
            return Err(Error::not_running(name.as_str()));
        }
        let mut st = self.st();
        st.execs.push((argv.to_vec(), io.stdin.to_vec()));
        if argv == ["/bin/sh", "-s"] {
            let _ = io.stdout.write_all(st.probe_output.as_bytes());
        }
        Ok(argv
            .first()
            .and_then(|p| st.exit_codes.get(p))
            .copied()
            .unwrap_or(0))
    }
    fn enable_nesting(&self, name: &InstanceName, _: &dyn Progress) -> Result<Option<String>> {
        self.get(name).map(|_| None)
    }
    fn ssh(&self, name: &InstanceName, command: &[String]) -> Result<Handoff> {
        self.get(name)?;
        Ok(Handoff {
            program: "ssh".into(),
            args: command.to_vec(),
            note: None,
        })
    }
    fn console(&self, name: &InstanceName) -> Result<Handoff> {
        self.ssh(name, &[])
    }
    fn passwd(&self, name: &InstanceName, _: &str) -> Result<Password> {
        self.get(name).map(|_| Password::new("pw".into()))
    }
    fn resize(&self, name: &InstanceName, _: Resize, _: &dyn Progress) -> Result<String> {
        self.get(name).map(|_| String::new())
    }
}

impl BackupBackend for FakeBackend {
    /// Writes one data file; incremental when allowed and there is a previous backup.
    fn backup(
        &self,
        name: &InstanceName,
        req: &BackupRequest<'_>,
        staging: &Path,
        _: &dyn Progress,
    ) -> Result<Manifest> {
        let inst = self.get(name)?;
        std::fs::write(staging.join("data"), format!("{name} {}", req.id))
            .map_err(|e| Error::io("writing", e))?;
        let parent = req
            .previous
            .filter(|_| req.incremental)
            .map(|(m, _)| m.id.clone());
        Ok(Manifest {
            format: FORMAT,
            nox_version: "test".into(),
            id: req.id.into(),
            instance: name.to_string(),
            backend: self.kind,
            created_at: "2026-11-26T00:00:00Z".into(),
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent,
            consistency: Consistency::Application,
            note: None,
            spec: spec_of(&inst, self.kind),
            autostart: true,
            was_running: true,
            vm: None,
            lxc: None,
            incus: None,
            files: vec![file_entry(staging, "data", &Quiet)?],
            encryption: None,
        })
    }

    fn restore(
        &self,
        chain: &[LocalBackup],
        target: &InstanceName,
        _: RestoreOptions,
        _: &dyn Progress,
    ) -> Result<Instance> {
        let mut st = self.st();
        st.restored
            .push(chain.iter().map(|b| b.manifest.id.clone()).collect());
        let i = instance(target.as_str(), self.kind);
        st.instances.insert(target.to_string(), i.clone());
        Ok(i)
    }
}

fn spec_of(i: &Instance, kind: BackendKind) -> InstanceSpec {
    InstanceSpec {
        name: i.name.parse().expect("fake names are valid"),
        backend: kind,
        image: i.image.clone(),
        cpus: i.cpus,
        memory_bytes: i.memory_bytes,
        disk_bytes: 1 << 30,
        network: nox_core::instance::NetworkSpec::Default,
        autostart: true,
        user: "nox".into(),
        ssh_keys: vec![],
        privileged: i.privileged,
        nesting: false,
        tun: kind == BackendKind::Lxc,
        mounts: Vec::new(),
    }
}

/// A context over `dir` (config dirs, data dir, logs and backups all inside it), with the
/// fake host.
pub fn context(dir: &Path, backends: Vec<Box<dyn Backend>>) -> Context {
    let mut config = Config::default();
    config.vm.storage_dir = dir.join("vm");
    config.lxc.lxcpath = dir.join("lxc");
    config.backup.dir = dir.join("backups");
    config.state.dir = dir.join("state");
    let (host, _, _) = Host::fake();
    Context {
        config,
        backends: Backends::new(backends),
        host,
        home: None,
        data_dir: Some(dir.join("data")),
        log_dir: Some(dir.join("logs")),
        config_file: Some(dir.join("config/nox.toml")),
        drivers: Vec::new(),
    }
}

/// A UI with scripted answers that records what it was told.
#[derive(Debug, Default)]
pub struct FakeUi {
    interactive: bool,
    answers: Mutex<VecDeque<bool>>,
    selection: Option<usize>,
    notes: Mutex<Vec<String>>,
    pub output: Arc<Mutex<Vec<u8>>>,
}

impl FakeUi {
    /// Someone at a terminal who answers the yes/no questions with `answers`, in order.
    pub fn interactive(answers: Vec<bool>) -> FakeUi {
        FakeUi {
            interactive: true,
            answers: Mutex::new(answers.into()),
            ..Default::default()
        }
    }

    /// ...and picks item `i` from every list.
    pub fn selecting(mut self, i: usize) -> FakeUi {
        self.selection = Some(i);
        self
    }

    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Ui for FakeUi {
    fn interactive(&self) -> bool {
        self.interactive
    }
    fn confirm(&self, _: &str) -> Result<bool> {
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| Error::Usage("the test gave no answer".into()))
    }
    fn select(&self, _: &str, _: &[String], _: usize) -> Result<Option<usize>> {
        Ok(self.selection)
    }
    fn note(&self, message: &str) {
        self.notes.lock().unwrap().push(message.into());
    }
    fn progress(&self) -> &dyn Progress {
        &Quiet
    }
    fn output(&self, _: bool) -> Box<dyn std::io::Write + Send> {
        Box::new(Shared(self.output.clone()))
    }
    fn errors(&self) -> Box<dyn std::io::Write + Send> {
        Box::new(Shared(self.output.clone()))
    }
}
