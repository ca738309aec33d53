//! nox's image builds: a guest image made on this host from a distribution's own package
//! archive with debootstrap, for hosts that reach a package mirror but no image server
//! (`build:DIST/RELEASE` sources, `nox image build`).
//!
//! One debootstrap tree becomes, as asked:
//! - `disk.qcow2`: a cloud-init-ready disk with its own bootloader (`disk.rs`);
//! - `rootfs.tar.xz`: a container rootfs shaped like the LXC image server's, with no
//!   cloud-init (`container.rs`).
//!
//! Outputs are kept under `[build] dir`/RECIPE-HASH/, each beside a `.sha256` file, and handed to
//! the backends' image caches as local sources with that checksum. What is verified: apt checks
//! the archive's signed Release file against the distribution's keyring on this host, and each
//! package against the Release file's hashes (see docs/images.md).
//!
//! - `recipe.rs`: the data that decides the outputs, hashed;
//! - `mirror.rs`: which archive to build from;
//! - `tree.rs`, `disk.rs`, `container.rs`: the steps.

pub mod container;
pub mod disk;
pub mod mirror;
pub mod recipe;
pub mod tree;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nox_core::config::{BuildConfig, Checksum, ImageSource};
use nox_core::host::Runner;
use nox_core::image_build::{ImageBuilder, Release};
use nox_core::{BackendKind, Error, Progress, Result};
use sha2::{Digest, Sha256};

pub use recipe::Recipe;

/// The VM output's file name in a build directory.
pub const QCOW2: &str = "disk.qcow2";
/// The container output's file name in a build directory.
pub const ROOTFS: &str = "rootfs.tar.xz";

/// A step a caller adds to a build: it gets the tree after it was shaped as a container's and
/// before cloud-init is removed (the test bed packs a cloud-init rootfs there).
pub type ContainerHook<'a> = &'a dyn Fn(&Path) -> Result<()>;

/// Builds images into `[build] dir`.
#[derive(Debug, Clone)]
pub struct Builder {
    runner: Arc<dyn Runner>,
    config: BuildConfig,
}

/// A finished build's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub dir: PathBuf,
    pub qcow2: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
}

impl Builder {
    pub fn new(runner: Arc<dyn Runner>, config: BuildConfig) -> Builder {
        Builder { runner, config }
    }

    /// The directory `recipe`'s outputs live in.
    pub fn dir_for(&self, recipe: &Recipe) -> PathBuf {
        self.config.dir.join(recipe.hash())
    }

    /// Builds what of `kinds` is not built yet for `recipe`, from one debootstrap tree.
    pub fn build(
        &self,
        recipe: &Recipe,
        kinds: &[BackendKind],
        hook: Option<ContainerHook<'_>>,
        progress: &dyn Progress,
    ) -> Result<Outputs> {
        let out = self.dir_for(recipe);
        fs::create_dir_all(&self.config.dir)
            .map_err(|e| Error::io(format!("creating {}", self.config.dir.display()), e))?;
        // One build per build directory at a time; a second waits, then finds it built.
        let _lock = nox_core::lock::lock_saying(&self.config.dir.join(".lock"), || {
            progress.step(&format!(
                "waiting for another nox's image build in {}",
                self.config.dir.display()
            ))
        })?;
        progress.done();
        remove_dead_builds(&self.config.dir);
        let want_vm = kinds.contains(&BackendKind::Vm);
        let want_lxc = kinds.contains(&BackendKind::Lxc);
        let built = |name: &str| is_published(&out.join(name));
        let need_vm = want_vm && !built(QCOW2);
        let need_lxc = want_lxc && !built(ROOTFS);
        if need_vm || need_lxc {
            self.run_build(recipe, &out, need_vm, need_lxc, hook, progress)?;
        }
        Ok(Outputs {
            qcow2: want_vm.then(|| out.join(QCOW2)),
            rootfs: want_lxc.then(|| out.join(ROOTFS)),
            dir: out,
        })
    }

    fn run_build(
        &self,
        recipe: &Recipe,
        out: &Path,
        vm: bool,
        lxc: bool,
        hook: Option<ContainerHook<'_>>,
        progress: &dyn Progress,
    ) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Usage(
                "building an image needs root (debootstrap, loop devices): run nox as root".into(),
            ));
        }
        let runner = &*self.runner;
        let started = Instant::now();
        let work = Workdir::new(self.config.dir.join(format!(
            ".{}.building-{}",
            recipe.hash(),
            std::process::id()
        )))?;
        let tree = work.0.join("tree");
        let mirror = mirror::archive_for(recipe.release, &self.config);
        let step = |what: String| {
            tracing::info!(elapsed = ?started.elapsed(), "{what}");
            progress.step(&what);
        };
        step(format!(
            "debootstrap {} from {mirror} (the longest step)",
            recipe.release
        ));
        let result = tree::debootstrap(runner, recipe, &mirror, &tree);
        progress.done();
        result?;
        nox_core::interrupt::check()?;
        tree::configure(&tree)?;
        if vm {
            step("building the VM disk (ext4, extlinux, qcow2)".into());
            let result = disk::build_qcow2(runner, &tree, &work.0, &work.0.join(QCOW2));
            progress.done();
            result?;
            nox_core::interrupt::check()?;
        }
        if lxc {
            step("packing the container rootfs".into());
            let result = (|| {
                container::shape(&tree)?;
                if let Some(hook) = hook {
                    hook(&tree)?;
                }
                container::without_cloud_init(runner, &tree)?;
                container::pack(runner, &tree, &work.0.join(ROOTFS))
            })();
            progress.done();
            result?;
        }
        fs::create_dir_all(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
        for (name, wanted) in [(QCOW2, vm), (ROOTFS, lxc)] {
            if wanted {
                publish(&work.0.join(name), &out.join(name))?;
            }
        }
        tracing::info!(recipe = %recipe.hash(), elapsed = ?started.elapsed(), "image built");
        Ok(())
    }
}

impl ImageBuilder for Builder {
    fn build(
        &self,
        release: Release,
        kinds: &[BackendKind],
        progress: &dyn Progress,
    ) -> Result<Vec<ImageSource>> {
        let outputs = Builder::build(self, &Recipe::for_release(release), kinds, None, progress)?;
        kinds
            .iter()
            .map(|kind| {
                let path = match kind {
                    BackendKind::Vm => outputs.qcow2.as_ref(),
                    BackendKind::Lxc => outputs.rootfs.as_ref(),
                };
                let path = path.ok_or_else(|| {
                    Error::failed(
                        format!("the build made no {kind} image"),
                        "report this as a bug",
                    )
                })?;
                source_for(path)
            })
            .collect()
    }

    fn typical_duration(&self) -> Duration {
        // Measured on a 2-CPU host against a nearby mirror (docs/benchmarks.md).
        Duration::from_secs(5 * 60)
    }
}

/// A published output as a local source with its recorded SHA-256: the image caches copy and
/// verify it like any download.
pub fn source_for(path: &Path) -> Result<ImageSource> {
    let sums = sum_file(path);
    let text = fs::read_to_string(&sums)
        .map_err(|e| Error::io(format!("reading {}", sums.display()), e))?;
    let checksum = Checksum::try_from(format!("sha256:{}", text.trim())).map_err(|e| {
        Error::failed(
            format!("{}: {e}", sums.display()),
            "remove the build directory and build again",
        )
    })?;
    Ok(ImageSource {
        url: path.display().to_string(),
        checksum: Some(checksum),
        checksum_url: None,
    })
}

fn sum_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn is_published(path: &Path) -> bool {
    path.is_file() && sum_file(path).is_file()
}

/// Moves a finished output into place, its checksum first: an output without its `.sha256`
/// beside it counts as not built.
fn publish(from: &Path, to: &Path) -> Result<()> {
    let mut f =
        fs::File::open(from).map_err(|e| Error::io(format!("opening {}", from.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| Error::io(format!("hashing {}", from.display()), e))?;
    let sum = hex::encode(h.finalize());
    let _ = fs::remove_file(to);
    fs::write(sum_file(to), format!("{sum}\n"))
        .map_err(|e| Error::io(format!("writing {}", sum_file(to).display()), e))?;
    fs::rename(from, to).map_err(|e| Error::io(format!("publishing {}", to.display()), e))
}

/// Scratch directories of builds whose process is gone (killed, or the host went down):
/// each holds a debootstrap tree of about 1 GB. Called under the build lock, so no live build
/// is touched.
fn remove_dead_builds(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .split_once(".building-")
            .and_then(|(_, pid)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive || pid == std::process::id() as i32 {
            tracing::info!(path = %e.path().display(), "removing a dead build's scratch directory");
            drop(Workdir(e.path()));
        }
    }
}

/// The build's scratch directory, removed on drop (after unmounting anything left below it).
struct Workdir(PathBuf);

impl Workdir {
    fn new(path: PathBuf) -> Result<Workdir> {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Workdir(path))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Never remove_dir_all through a live mount.
        let _ = nix::mount::umount2(&self.0.join("mnt"), nix::mount::MntFlags::MNT_DETACH);
        for sub in ["proc", "sys", "dev/pts", "dev"] {
            let _ = nix::mount::umount2(
                &self.0.join("tree").join(sub),
                nix::mount::MntFlags::MNT_DETACH,
            );
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}
