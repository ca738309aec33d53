//! The test bed's guest image (`cargo xtask test-image`), as live tests find it.

use std::path::PathBuf;

use nox_core::config::{self, ConfigFiles};

/// Set by `cargo xtask it` / `ci` to the nox.toml that `cargo xtask test-image` printed.
pub const IMAGE_CONFIG_ENV: &str = "NOX_TEST_IMAGE_CONFIG";
pub const IMAGE_NAME: &str = "debian-12-test";
pub const MINIMAL_IMAGE_NAME: &str = "debian-12-test-minimal";

#[derive(Debug, Clone)]
pub struct TestImage {
    /// The nox.toml declaring the image (for `NOX_CONFIG`).
    pub config: PathBuf,
    pub qcow2: PathBuf,
    /// The container tree with cloud-init (`lxc-create -t local`'s input).
    pub rootfs: PathBuf,
    /// LXC image metadata, beside the rootfs.
    pub meta: PathBuf,
    /// nox's own container rootfs (`debian-12-test-minimal`): what `nox image build` makes.
    pub minimal_rootfs: PathBuf,
    /// Where nox's builds of the test bed live (its `[build] dir`).
    pub build_dir: PathBuf,
}

impl TestImage {
    /// Reads the image's nox.toml. Panics with the fix when the live environment lacks it.
    pub fn get() -> TestImage {
        let config = std::env::var_os(IMAGE_CONFIG_ENV).map(PathBuf::from).unwrap_or_else(|| {
            panic!(
                "{IMAGE_CONFIG_ENV} is not set: run live tests through `cargo xtask it`, which builds the test image"
            )
        });
        let files = ConfigFiles {
            host: PathBuf::from("/nonexistent"),
            user: None,
            explicit: Some(config.clone()),
        };
        let cfg = config::load(&files, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()))
            .config;
        let image = &cfg.images[IMAGE_NAME];
        let qcow2 = PathBuf::from(&image.vm.first().expect("vm source").url);
        let rootfs = PathBuf::from(&image.lxc.first().expect("lxc source").url);
        let meta = rootfs.with_file_name("meta.tar.xz");
        let minimal_rootfs = PathBuf::from(
            &cfg.images[MINIMAL_IMAGE_NAME]
                .lxc
                .first()
                .expect("lxc source")
                .url,
        );
        TestImage {
            config,
            qcow2,
            rootfs,
            meta,
            minimal_rootfs,
            build_dir: cfg.build.dir.clone(),
        }
    }
}
