//! Per-host configuration: typed keys, and the layering that produces the effective config.
//!
//! Layers, lowest to highest:
//! 1. built-in defaults ([`Config::default`], documented key by key in `nox.toml.example`);
//! 2. the host file, `/etc/nox/nox.toml`;
//! 3. the user file, `$XDG_CONFIG_HOME/nox/nox.toml` or `~/.config/nox/nox.toml`, or instead
//!    the file named by `NOX_CONFIG`;
//! 4. flags.
//!
//! Each file is checked on its own against the typed schema, so an unknown key or a wrong type
//! is reported with that file's line and column. Layers merge key by key, except that an
//! `[images.NAME]` or `[remotes.NAME]` entry is replaced whole: mixing one layer's URL with
//! another's checksum (or pinned certificate) would verify nothing. Every effective value remembers where it came from (`nox config show --origin`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::{BackendKind, NetworkSpec};
use crate::resources::{CpuRequest, DiskRequest, MemoryRequest};

pub const HOST_CONFIG: &str = "/etc/nox/nox.toml";
pub const ENV_CONFIG: &str = "NOX_CONFIG";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub defaults: Defaults,
    pub vm: VmConfig,
    pub lxc: LxcConfig,
    pub tailscale: TailscaleConfig,
    pub backup: BackupConfig,
    pub s3: S3Config,
    pub state: StateConfig,
    pub build: BuildConfig,
    pub images: BTreeMap<String, ImageConfig>,
    /// `[remotes.NAME]`: servers and clusters nox drives over their API (`nox create
    /// --remote NAME`, `NAME:INSTANCE`). None by default: instances live on this host.
    pub remotes: BTreeMap<crate::name::RemoteName, RemoteConfig>,
}

/// What drives a remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteDriver {
    /// An Incus server or cluster, through its REST API.
    Incus,
}

/// `[remotes.NAME]`: one server or cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub driver: RemoteDriver,
    /// `unix:///path/unix.socket` or `https://host[:8443]`.
    pub url: String,
    /// The Incus project instances live in.
    #[serde(default = "default_project")]
    pub project: String,
    /// nox's client certificate and key (PEM) for HTTPS; the key must be readable by its
    /// owner only. `nox remote add` makes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// The SHA-256 of the server's certificate (hex), pinned: HTTPS to any other is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The network privileged containers' NIC bridges to (the remote's own LAN bridge);
    /// `--privileged` is refused on a remote without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged_network: Option<String>,
    /// The storage pool root disks go to (VMs get their `--disk` size there).
    #[serde(default = "default_pool")]
    pub storage_pool: String,
}

fn default_project() -> String {
    "default".into()
}

fn default_pool() -> String {
    "default".into()
}

/// `[backup]`: where local backups live and how many of each instance are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    pub dir: PathBuf,
    /// Backups kept per instance (at least 1); older ones are removed after each backup and by
    /// `nox backup --prune`. A chain of incremental backups is cut (a new full backup is made)
    /// when it reaches this length, so retention can always remove whole old chains.
    #[serde(deserialize_with = "at_least_one")]
    pub keep: u32,
    /// An age recipients file (`age1...` public keys, one a line, `#` comments): when set,
    /// every backup is encrypted to these keys before it goes to S3. Empty: uploads in clear.
    pub recipients_file: PathBuf,
    /// The age identity file (`AGE-SECRET-KEY-1...`, as `age-keygen` writes it) that
    /// decrypts backups fetched from S3; mode 0600, refused when others may read it.
    pub identity_file: PathBuf,
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("keep must be at least 1"));
    }
    Ok(n)
}

/// `[state]`: where nox keeps its per-instance locks and the records of operations in
/// progress, which let the next command put right what a killed one left half-done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    #[serde(deserialize_with = "absolute_path")]
    pub dir: PathBuf,
}

/// `[build]`: images nox builds on this host from a distribution's archive (`build:` sources,
/// `nox image build`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Finished builds, one directory per recipe; the image caches copy from here.
    #[serde(deserialize_with = "absolute_path")]
    pub dir: PathBuf,
    /// The Debian archive to build from. Empty: the Debian source of this host's apt
    /// configuration, else `http://deb.debian.org/debian`.
    #[serde(deserialize_with = "archive_url")]
    pub debian_mirror: String,
    /// The Ubuntu archive to build from. Empty: `http://archive.ubuntu.com/ubuntu` (amd64) or
    /// `http://ports.ubuntu.com/ubuntu-ports` (other architectures).
    #[serde(deserialize_with = "archive_url")]
    pub ubuntu_mirror: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            dir: "/var/cache/nox/builds".into(),
            debian_mirror: String::new(),
            ubuntu_mirror: String::new(),
        }
    }
}

/// An archive debootstrap can read: empty (the default), or an http(s):// or file:/// URL.
/// Checked when the config loads, not minutes into a build. Plain http is fine here: apt
/// checks the archive's signed Release file whatever carries it.
fn archive_url<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let ok = url.is_empty()
        || ["http://", "https://", "file:///"].iter().any(|p| {
            url.starts_with(p) && url.len() > p.len() && !url.contains(char::is_whitespace)
        });
    if ok {
        Ok(url)
    } else {
        Err(serde::de::Error::custom(format!(
            "{url:?} is not an archive URL: give http://, https:// or file:///, e.g. \"http://deb.debian.org/debian\", or leave it empty"
        )))
    }
}

/// A path that means the same file from any working directory: two nox commands started in
/// different directories must find the same lock files, and a qcow2 overlay names its
/// backing file by path, which a relative one would resolve against the overlay's own dir.
fn absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<PathBuf, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(serde::de::Error::custom(format!(
            "`{}` is not an absolute path: give one from /, such as \"/var/lib/nox/state\", so every nox command means the same files",
            p.display()
        )))
    }
}

/// `[s3]`: an S3-compatible bucket for `nox backup --to s3`. Credentials are never here: they
/// come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or from `credentials_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `https://HOST[:PORT]`; empty means AWS for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Key prefix under which backups are stored (`PREFIX/INSTANCE/ID/FILE`).
    pub prefix: String,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`), which most self-hosted servers need.
    pub path_style: bool,
    /// A file with `access_key_id = "..."` and `secret_access_key = "..."`, mode 0600.
    pub credentials_file: PathBuf,
}

/// `[tailscale]`: how the `tailscale` launch script joins a tailnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TailscaleConfig {
    /// A file holding a Tailscale auth key, readable by its owner only (mode 0600 or 0400).
    /// Empty: none. `TS_AUTHKEY` in the environment takes precedence.
    pub authkey_file: String,
}

/// What `nox create` uses when a flag is not given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub backend: BackendKind,
    pub image: String,
    pub cpus: CpuRequest,
    pub memory: MemoryRequest,
    pub disk: DiskRequest,
    pub network: NetworkSpec,
    pub autostart: bool,
    pub user: String,
    /// Public key files (or key text) for the guest user. Empty: every `~/.ssh/*.pub`.
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    /// `kvm` when KVM can run ordinary guests (probed, not assumed), else `qemu`.
    Auto,
    Kvm,
    /// Software emulation (TCG).
    Qemu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    pub uri: String,
    pub domain_type: DomainType,
    /// Where nox keeps VM disks, seeds and its image cache.
    #[serde(deserialize_with = "absolute_path")]
    pub storage_dir: PathBuf,
    /// Create VMs by restoring a saved, booted template of their shape (see
    /// docs/backends.md); `false` boots every VM cold.
    pub templates: bool,
    /// Where templates live; by default `STORAGE_DIR/templates`. Hosts (and test runs) with
    /// several storage dirs can share one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "absolute_path_opt"
    )]
    pub templates_dir: Option<PathBuf>,
}

impl VmConfig {
    pub fn templates_dir(&self) -> PathBuf {
        self.templates_dir
            .clone()
            .unwrap_or_else(|| self.storage_dir.join("templates"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LxcConfig {
    pub lxcpath: PathBuf,
    /// The NAT bridge ordinary containers join.
    #[serde(deserialize_with = "interface_name")]
    pub bridge: String,
    /// The bridge privileged containers join (they get a LAN presence, as the seed analysis had).
    #[serde(deserialize_with = "interface_name")]
    pub privileged_bridge: String,
    /// Pass /dev/net/tun into unprivileged containers.
    pub tun: bool,
    /// The simplestreams server `images:DIST/RELEASE` sources come from: the LXC image server
    /// or a mirror of it.
    #[serde(deserialize_with = "image_server_url")]
    pub image_server: String,
}

/// The LXC project's public image server.
pub const DEFAULT_IMAGE_SERVER: &str = "https://images.linuxcontainers.org";

/// An image server is `https://HOST[/PATH]`. Plain `http://` only reaches a server on this
/// host (127.0.0.1, ::1, localhost): across a network nothing would authenticate the products
/// file, and with it every checksum nox verifies against.
fn image_server_url<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<String, D::Error> {
    let url = String::deserialize(d)?;
    check_image_server(&url).map_err(serde::de::Error::custom)?;
    Ok(url.trim_end_matches('/').to_string())
}

pub fn check_image_server(url: &str) -> std::result::Result<(), String> {
    let fix = "write https://HOST, e.g. https://images.linuxcontainers.org";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} holds a space or control character: {fix}"));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        if rest.trim_end_matches('/').is_empty() {
            return Err(format!("{url:?} names no host: {fix}"));
        }
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split('/').next().unwrap_or("");
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        if matches!(host, "127.0.0.1" | "::1" | "localhost") {
            return Ok(());
        }
        return Err(format!(
            "{url:?}: plain http is only for a server on this host (127.0.0.1); {fix}"
        ));
    }
    Err(format!("{url:?} is not an https:// URL: {fix}"))
}

/// A bridge name becomes an LXC config line and a /sys path: it must be one the kernel could
/// give an interface, checked when the file is read.
fn absolute_path_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    absolute_path(d).map(Some)
}

fn interface_name<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if !crate::instance::is_interface_name(&name) {
        return Err(serde::de::Error::custom(format!(
            "{name:?} is not an interface name (1 to 15 letters, digits, '-', '_' or '.')"
        )));
    }
    Ok(name)
}

/// `[images.NAME]`: where each backend gets this image, and how it is verified. Each backend
/// takes one source (`[images.NAME.vm]`) or several in order (`vm = [{...}, {...}]`): nox uses
/// the first that works and says in one line when it falls back to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    #[serde(
        default,
        deserialize_with = "one_or_more",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vm: Vec<ImageSource>,
    #[serde(
        default,
        deserialize_with = "one_or_more",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lxc: Vec<ImageSource>,
}

/// A source table, or an array of them (tried in order).
fn one_or_more<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<ImageSource>, D::Error> {
    // A visitor, not an untagged enum: an untagged enum would hide each source's own error
    // ("bad checksum", with its line and column) behind "did not match any variant".
    struct Sources;
    impl<'de> serde::de::Visitor<'de> for Sources {
        type Value = Vec<ImageSource>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a source table or an array of source tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            ImageSource::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(|s| vec![s])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let sources =
                Vec::<ImageSource>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
            if sources.is_empty() {
                return Err(serde::de::Error::custom(
                    "an image needs at least one source",
                ));
            }
            Ok(sources)
        }
    }
    d.deserialize_any(Sources)
}

/// One image source. `url` is `https://…`, `file://…` or a plain path; for LXC it may also be
/// `images:DIST/RELEASE`, from the simplestreams server `[lxc] image_server`, each file checked
/// against the SHA-256 in the server's products file (see `simplestreams`). `build:DIST/RELEASE`
/// builds the image on this host from the distribution's archive with debootstrap, whose
/// packages apt checks against the archive's signed Release file (see `image_build`).
/// Anything else carries a checksum: a literal `checksum = "sha256:…"`/`"sha512:…"`, or a
/// `checksum_url` naming the SHA256SUMS/SHA512SUMS file published beside the image. `{arch}`
/// in a URL expands to the host's Debian architecture (amd64, arm64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawImageSource")]
pub struct ImageSource {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImageSource {
    url: String,
    checksum: Option<Checksum>,
    checksum_url: Option<String>,
}

impl TryFrom<RawImageSource> for ImageSource {
    type Error = String;
    fn try_from(raw: RawImageSource) -> std::result::Result<Self, String> {
        let image_server = raw.url.starts_with("images:");
        if let Some(spec) = raw.url.strip_prefix("build:") {
            crate::image_build::Release::parse(spec).map_err(|e| e.to_string())?;
            if raw.checksum.is_some() || raw.checksum_url.is_some() {
                return Err(format!(
                    "{:?} is built here and verified by apt: drop `checksum`/`checksum_url`",
                    raw.url
                ));
            }
            return Ok(ImageSource {
                url: raw.url,
                checksum: None,
                checksum_url: None,
            });
        }
        match (&raw.checksum, &raw.checksum_url) {
            (Some(_), Some(_)) => {
                return Err("give either `checksum` or `checksum_url`, not both".into())
            }
            (None, None) if !image_server => {
                return Err(format!(
                    "image {:?} has no `checksum` or `checksum_url`: nox never uses an unverified image",
                    raw.url
                ))
            }
            _ => {}
        }
        Ok(ImageSource {
            url: raw.url,
            checksum: raw.checksum,
            checksum_url: raw.checksum_url,
        })
    }
}

/// `sha256:HEX` or `sha512:HEX`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// Lowercase hex.
    pub hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha256,
    Sha512,
}

impl TryFrom<String> for Checksum {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let (algorithm, len) = match s.split_once(':') {
            Some(("sha256", _)) => (ChecksumAlgorithm::Sha256, 64),
            Some(("sha512", _)) => (ChecksumAlgorithm::Sha512, 128),
            _ => return Err(format!("checksum {s:?} must start with sha256: or sha512:")),
        };
        let hex = s
            .split_once(':')
            .map(|(_, h)| h.to_ascii_lowercase())
            .unwrap_or_default();
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "checksum {s:?} must have {len} hex digits after the colon"
            ));
        }
        Ok(Checksum { algorithm, hex })
    }
}

impl From<Checksum> for String {
    fn from(c: Checksum) -> String {
        c.to_string()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algo = match self.algorithm {
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha512 => "sha512",
        };
        write!(f, "{algo}:{}", self.hex)
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            backend: BackendKind::Vm,
            image: "debian-12".into(),
            cpus: CpuRequest::Count(1),
            memory: "1G".parse().expect("valid built-in"),
            disk: "10G".parse().expect("valid built-in"),
            network: NetworkSpec::Default,
            autostart: true,
            user: "nox".into(),
            ssh_keys: Vec::new(),
        }
    }
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            uri: "qemu:///system".into(),
            domain_type: DomainType::Auto,
            storage_dir: "/var/lib/nox/vm".into(),
            templates: true,
            templates_dir: None,
        }
    }
}

impl Default for LxcConfig {
    fn default() -> Self {
        LxcConfig {
            lxcpath: "/var/lib/lxc".into(),
            bridge: "lxcbr0".into(),
            privileged_bridge: "br0".into(),
            tun: true,
            image_server: DEFAULT_IMAGE_SERVER.into(),
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: "/var/lib/nox/backups".into(),
            keep: 7,
            recipients_file: PathBuf::new(),
            identity_file: "/etc/nox/backup-identity.txt".into(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: "/var/lib/nox/state".into(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: "nox".into(),
            path_style: false,
            credentials_file: "/etc/nox/s3-credentials.toml".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            defaults: Defaults::default(),
            vm: VmConfig::default(),
            lxc: LxcConfig::default(),
            tailscale: TailscaleConfig::default(),
            backup: BackupConfig::default(),
            s3: S3Config::default(),
            state: StateConfig::default(),
            build: BuildConfig::default(),
            images: built_in_images(),
            remotes: BTreeMap::new(),
        }
    }
}

/// The built-in `[images]`: each release's published cloud image (VMs) and the LXC image
/// server's build (containers) first, then a build from the distribution's archive on this
/// host, for hosts that reach only a package mirror.
fn built_in_images() -> BTreeMap<String, ImageConfig> {
    let source = |url: String, checksum_url: Option<String>| ImageSource {
        url,
        checksum: None,
        checksum_url,
    };
    crate::image_build::RELEASES
        .iter()
        .map(|r| {
            let (cloud_image, sums) = match r.distribution {
                crate::image_build::Distribution::Debian => {
                    let dir = format!("https://cloud.debian.org/images/cloud/{}/latest", r.suite);
                    (
                        format!("{dir}/debian-{}-genericcloud-{{arch}}.qcow2", r.version),
                        format!("{dir}/SHA512SUMS"),
                    )
                }
                crate::image_build::Distribution::Ubuntu => {
                    let dir = format!(
                        "https://cloud-images.ubuntu.com/releases/{}/release",
                        r.suite
                    );
                    (
                        format!("{dir}/ubuntu-{}-server-cloudimg-{{arch}}.img", r.version),
                        format!("{dir}/SHA256SUMS"),
                    )
                }
            };
            let build = source(r.source_url(), None);
            let entry = ImageConfig {
                vm: vec![source(cloud_image, Some(sums)), build.clone()],
                lxc: vec![
                    source(format!("images:{}/{}", r.distribution, r.suite), None),
                    build,
                ],
            };
            (r.image_name(), entry)
        })
        .collect()
}

impl Config {
    /// The `[images.NAME]` sources for `backend`, in the order to try them, or an error that
    /// lists what exists.
    pub fn image_sources(
        &self,
        image: &str,
        backend: crate::BackendKind,
    ) -> Result<&[ImageSource]> {
        let entry = self.images.get(image).ok_or_else(|| {
            Error::Usage(format!(
                "no image named {image:?} in [images]; known: {}",
                self.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let sources = match backend {
            crate::BackendKind::Vm => &entry.vm,
            crate::BackendKind::Lxc => &entry.lxc,
        };
        if sources.is_empty() {
            return Err(Error::Usage(format!(
                "image {image:?} has no [images.{image}.{backend}] source"
            )));
        }
        Ok(sources)
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "source", rename_all = "lowercase")]
pub enum Origin {
    Default,
    File(PathBuf),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value given on the command line, applied over every file.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted key, e.g. `defaults.cpus`.
    pub key: &'static str,
    pub value: toml::Value,
    /// The flag as the user wrote it, e.g. `--cpus`.
    pub flag: &'static str,
}

/// Which files to read. Built from the environment by [`ConfigFiles::from_env`]; tests build
/// their own.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    pub host: PathBuf,
    /// The user file; may not exist.
    pub user: Option<PathBuf>,
    /// `NOX_CONFIG`: read instead of the user file, and it must exist.
    pub explicit: Option<PathBuf>,
}

impl ConfigFiles {
    pub fn from_env() -> Self {
        let env_path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let user = env_path("XDG_CONFIG_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| env_path("HOME").map(|h| h.join(".config")))
            .map(|dir| dir.join("nox/nox.toml"));
        ConfigFiles {
            host: PathBuf::from(HOST_CONFIG),
            user,
            explicit: env_path(ENV_CONFIG),
        }
    }

    /// The file nox writes settings into (`nox remote add`): `NOX_CONFIG` when set (it is
    /// read instead of the user file), else the user file.
    pub fn writable(&self) -> Option<&Path> {
        self.explicit.as_deref().or(self.user.as_deref())
    }

    /// Every file that may be read, lowest layer first, with whether it must exist.
    pub fn candidates(&self) -> Vec<(PathBuf, bool)> {
        let mut files = vec![(self.host.clone(), false)];
        match (&self.explicit, &self.user) {
            (Some(p), _) => files.push((p.clone(), true)),
            (None, Some(p)) => files.push((p.clone(), false)),
            (None, None) => {}
        }
        files
    }
}

/// The directory of `file` (a config file), where nox keeps what belongs with it (client
/// certificates of remotes).
pub fn config_dir_of(file: &Path) -> PathBuf {
    // Absolute: the paths nox writes into the config must mean the same from anywhere.
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The effective config and where each value came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Dotted key of every leaf value -> its origin.
    pub origins: BTreeMap<String, Origin>,
    /// The files read, lowest layer first.
    pub files_read: Vec<PathBuf>,
}

impl LoadedConfig {
    /// Every leaf as (dotted key, TOML value, origin), in key order.
    pub fn leaves(&self) -> Vec<(String, toml::Value, Origin)> {
        let table = toml::Table::try_from(&self.config).expect("config serializes");
        let mut out = Vec::new();
        collect_leaves(&table, "", &mut |key, value| {
            let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Default);
            out.push((key, value.clone(), origin));
        });
        out
    }
}

/// Reads and layers every config file, then applies `overrides`.
pub fn load(files: &ConfigFiles, overrides: &[Override]) -> Result<LoadedConfig> {
    let mut texts = Vec::new();
    for (path, required) in files.candidates() {
        match std::fs::read_to_string(&path) {
            Ok(t) => texts.push((path, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(source) => return Err(Error::ConfigRead { file: path, source }),
        }
    }
    load_texts(texts, overrides)
}

/// Layers config files given as (path, text), lowest first, then applies `overrides`: what
/// [`load`] does once the files are read (and what the config fuzz target drives).
pub fn load_texts(texts: Vec<(PathBuf, String)>, overrides: &[Override]) -> Result<LoadedConfig> {
    let mut merged = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let mut origins = BTreeMap::new();
    collect_leaves(&merged, "", &mut |key, _| {
        origins.insert(key, Origin::Default);
    });
    let mut files_read = Vec::new();
    for (path, text) in texts {
        let layer = parse_file(&path, &text)?;
        merge(
            &mut merged,
            layer,
            "",
            &Origin::File(path.clone()),
            &mut origins,
        );
        files_read.push(path);
    }
    for o in overrides {
        let mut layer = toml::Table::new();
        insert_dotted(&mut layer, o.key, o.value.clone());
        merge(
            &mut merged,
            layer,
            "",
            &Origin::Flag(o.flag.to_string()),
            &mut origins,
        );
    }
    let config = Config::deserialize(toml::Value::Table(merged)).map_err(|e| {
        // Only overrides can get here: every file was checked on its own above.
        Error::Usage(format!(
            "invalid value from the command line: {}",
            e.message()
        ))
    })?;
    Ok(LoadedConfig {
        config,
        origins,
        files_read,
    })
}

/// Checks one file against the schema and returns its table.
pub fn parse_file(path: &Path, text: &str) -> Result<toml::Table> {
    let syntax = |e: toml::de::Error| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        Error::ConfigSyntax {
            file: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().replace('\n', " "),
        }
    };
    toml::from_str::<Config>(text).map_err(syntax)?;
    let table = toml::from_str::<toml::Table>(text).map_err(syntax)?;
    if let Some(key) = key_with_nul(&table, "") {
        // TOML's \u0000 escape is the only way in: point at it.
        let at = ["\\u0000", "\\U00000000"]
            .iter()
            .filter_map(|e| text.find(e))
            .min()
            .unwrap_or(0);
        let (line, column) = line_col(text, at);
        return Err(Error::ConfigSyntax {
            file: path.to_path_buf(),
            line,
            column,
            message: format!(
                "{key} holds a NUL character, which no path, name or value nox passes on may hold"
            ),
        });
    }
    Ok(table)
}

/// The dotted key of the first key or string in `table` holding a NUL character: such a value
/// cannot reach the C libraries and programs nox hands paths and names to.
fn key_with_nul(table: &toml::Table, prefix: &str) -> Option<String> {
    fn in_value(v: &toml::Value, key: &str) -> Option<String> {
        match v {
            toml::Value::String(s) if s.contains('\0') => Some(key.to_string()),
            toml::Value::Array(items) => items.iter().find_map(|i| in_value(i, key)),
            toml::Value::Table(t) => key_with_nul(t, key),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if k.contains('\0') {
            return Some(key.replace('\0', "\\0"));
        }
        in_value(v, &key)
    })
}

/// 1-based line and column (in characters) of a byte offset; an offset past the end or
/// inside a character counts from the last character boundary before it.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn collect_leaves(table: &toml::Table, prefix: &str, f: &mut dyn FnMut(String, &toml::Value)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => collect_leaves(t, &key, f),
            _ => f(key, v),
        }
    }
}

fn merge(
    base: &mut toml::Table,
    layer: toml::Table,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (k, v) in layer {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        // `[images.NAME]` and `[remotes.NAME]` are replaced whole; every other table merges
        // key by key.
        let replace_whole = prefix == "images" || prefix == "remotes";
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) if !replace_whole => {
                merge(b, t, &key, origin, origins);
            }
            (_, v) => {
                let below = format!("{key}.");
                origins.retain(|o, _| o != &key && !o.starts_with(&below));
                match &v {
                    toml::Value::Table(t) if !t.is_empty() => {
                        collect_leaves(t, &key, &mut |k, _| {
                            origins.insert(k, origin.clone());
                        })
                    }
                    _ => {
                        origins.insert(key, origin.clone());
                    }
                }
                base.insert(k, v);
            }
        }
    }
}

fn insert_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                insert_dotted(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Env {
        dir: tempfile::TempDir,
    }

    impl Env {
        fn new() -> Self {
            Env {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            fs::write(&p, text).unwrap();
            p
        }
        fn files(
            &self,
            host: Option<&str>,
            user: Option<&str>,
            explicit: Option<&str>,
        ) -> ConfigFiles {
            ConfigFiles {
                host: host
                    .map(|t| self.file("host.toml", t))
                    .unwrap_or_else(|| self.dir.path().join("absent-host.toml")),
                user: Some(
                    user.map(|t| self.file("user.toml", t))
                        .unwrap_or_else(|| self.dir.path().join("absent-user.toml")),
                ),
                explicit: explicit.map(|t| self.file("explicit.toml", t)),
            }
        }
    }

    #[test]
    fn example_file_documents_the_defaults_exactly() {
        let text = include_str!("../../../nox.toml.example");
        let table = parse_file(Path::new("nox.toml.example"), text).unwrap();
        let parsed = Config::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(parsed, Config::default());
        // Every key the schema has appears in the example, uncommented.
        let ours = toml::Table::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        collect_leaves(&ours, "", &mut |k, _| keys.push(k));
        let example = toml::from_str::<toml::Table>(text).unwrap();
        let mut example_keys = Vec::new();
        collect_leaves(&example, "", &mut |k, _| example_keys.push(k));
        assert_eq!(keys, example_keys);
    }

    #[test]
    fn layers_apply_lowest_to_highest_with_origins() {
        let env = Env::new();
        let files = env.files(
            Some("[defaults]\ncpus = 2\nmemory = \"2G\"\n[lxc]\ntun = false\n"),
            Some("[defaults]\ncpus = \"50%\"\n"),
            None,
        );
        let overrides = [Override {
            key: "defaults.memory",
            value: "4G".into(),
            flag: "--memory",
        }];
        let loaded = load(&files, &overrides).unwrap();
        let c = &loaded.config;
        assert_eq!(c.defaults.cpus, "50%".parse().unwrap());
        assert_eq!(c.defaults.memory, "4G".parse().unwrap());
        assert!(!c.lxc.tun);
        assert_eq!(c.vm.uri, "qemu:///system");
        let o = |k: &str| loaded.origins[k].clone();
        assert_eq!(
            o("defaults.cpus"),
            Origin::File(files.user.clone().unwrap())
        );
        assert_eq!(o("defaults.memory"), Origin::Flag("--memory".into()));
        assert_eq!(o("lxc.tun"), Origin::File(files.host.clone()));
        assert_eq!(o("vm.uri"), Origin::Default);
        assert_eq!(
            loaded.files_read,
            vec![files.host.clone(), files.user.unwrap()]
        );
    }

    #[test]
    fn nox_config_replaces_the_user_file() {
        let env = Env::new();
        let files = env.files(
            None,
            Some("[defaults]\ncpus = 2\n"),
            Some("[defaults]\nuser = \"ops\"\n"),
        );
        let loaded = load(&files, &[]).unwrap();
        assert_eq!(
            loaded.config.defaults.cpus,
            CpuRequest::Count(1),
            "user file must be skipped"
        );
        assert_eq!(loaded.config.defaults.user, "ops");
        assert_eq!(loaded.files_read, vec![files.explicit.unwrap()]);
    }

    #[test]
    fn image_server_defaults_to_the_lxc_server_and_accepts_a_mirror() {
        let env = Env::new();
        let loaded = load(&env.files(None, None, None), &[]).unwrap();
        assert_eq!(
            loaded.config.lxc.image_server,
            "https://images.linuxcontainers.org"
        );
        for (given, kept) in [
            (
                "https://mirror.example.org/lxc/",
                "https://mirror.example.org/lxc",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080/", "http://[::1]:8080"),
        ] {
            let text = format!("[lxc]\nimage_server = \"{given}\"\n");
            let loaded = load(&env.files(Some(&text), None, None), &[]).unwrap();
            assert_eq!(loaded.config.lxc.image_server, kept);
        }
    }

    #[test]
    fn missing_nox_config_file_is_an_error() {
        let env = Env::new();
        let mut files = env.files(None, None, None);
        files.explicit = Some(env.dir.path().join("nope.toml"));
        let err = load(&files, &[]).unwrap_err();
        assert!(matches!(err, Error::ConfigRead { .. }), "{err}");
    }

    #[test]
    fn an_image_may_list_sources_in_order() {
        let env = Env::new();
        let text = format!(
            "[images.mine]\nvm = [\n  {{ url = \"https://example.org/m.qcow2\", checksum = \"sha256:{}\" }},\n  {{ url = \"build:debian/12\" }},\n]\n",
            "b".repeat(64)
        );
        let files = env.files(Some(&text), None, None);
        let loaded = load(&files, &[]).unwrap();
        let urls: Vec<&str> = loaded.config.images["mine"]
            .vm
            .iter()
            .map(|s| s.url.as_str())
            .collect();
        assert_eq!(urls, ["https://example.org/m.qcow2", "build:debian/12"]);
        for (bad, says) in [
            ("[images.x]\nvm = []\n", "at least one source"),
            (
                "[images.x]\nvm = [{ url = \"build:debian/sid\" }]\n",
                "cannot build",
            ),
            (
                "[images.x]\nvm = [{ url = \"build:debian/12\", checksum_url = \"https://x/S\" }]\n",
                "verified by apt",
            ),
            (
                "[images.x]\nvm = [{ url = \"https://x/y.qcow2\" }]\n",
                "no `checksum`",
            ),
            (
                "[build]\ndebian_mirror = \"deb.debian.org/debian\"\n",
                "not an archive URL",
            ),
        ] {
            let files = env.files(Some(bad), None, None);
            let err = load(&files, &[]).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn built_in_images_download_first_and_build_second() {
        let c = Config::default();
        for (name, build) in [
            ("debian-12", "build:debian/bookworm"),
            ("debian-13", "build:debian/trixie"),
            ("ubuntu-24.04", "build:ubuntu/noble"),
        ] {
            for kind in [crate::BackendKind::Vm, crate::BackendKind::Lxc] {
                let sources = c.image_sources(name, kind).unwrap();
                assert_eq!(sources.len(), 2, "{name} {kind}");
                assert_eq!(sources[1].url, build);
                let first = &sources[0];
                match kind {
                    crate::BackendKind::Vm => assert!(
                        first.url.starts_with("https://") && first.checksum_url.is_some(),
                        "{first:?}"
                    ),
                    crate::BackendKind::Lxc => assert!(first.url.starts_with("images:")),
                }
            }
        }
    }

    #[test]
    fn image_entries_are_replaced_whole() {
        let env = Env::new();
        let text = format!(
            "[images.debian-12.vm]\nurl = \"file:///srv/d.qcow2\"\nchecksum = \"sha256:{}\"\n",
            "a".repeat(64)
        );
        let files = env.files(Some(&text), None, None);
        let loaded = load(&files, &[]).unwrap();
        let img = &loaded.config.images["debian-12"];
        assert_eq!(img.vm.len(), 1);
        assert_eq!(img.vm[0].url, "file:///srv/d.qcow2");
        assert!(
            img.lxc.is_empty(),
            "the built-in lxc source must not leak into a replaced entry"
        );
        assert!(!loaded.origins.contains_key("images.debian-12.lxc.url"));
        assert_eq!(
            loaded.origins["images.debian-12.vm.url"],
            Origin::File(files.host.clone())
        );
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("[defaults]\ncpu = 2\n", (2, 1), "unknown field `cpu`"),
            (
                "[defaults]\nautostart = \"yes\"\n",
                (2, 13),
                "expected a boolean",
            ),
            (
                "\n\n[vm]\ndomain_type = \"xen\"\n",
                (4, 15),
                "unknown variant `xen`",
            ),
            ("[defaults]\ncpus = 0\n", (2, 8), "at least 1"),
            ("[defaults]\nmemory = \"-1G\"\n", (2, 10), "positive"),
            (
                "[defaults]\nnetwork = \"nat\"\n",
                (2, 11),
                "invalid network",
            ),
            ("[nope]\n", (1, 2), "unknown field `nope`"),
            ("[defaults\n", (1, 10), ""),
            (
                "[images.x.vm]\nurl = \"https://example.org/x.qcow2\"\n",
                (1, 1),
                "no `checksum` or `checksum_url`",
            ),
            (
                "[images.x.vm]\nurl = \"/x.qcow2\"\nchecksum = \"md5:00\"\n",
                (3, 12),
                "sha256: or sha512:",
            ),
            // A NUL would panic or truncate at the C libraries (liblxc, libvirt) and programs.
            (
                "[lxc]\nlxcpath = \"/var/lib/lxc\\u0000x\"\n",
                (2, 24),
                "lxc.lxcpath holds a NUL",
            ),
            (
                "[defaults]\nssh_keys = [\"a\", \"b\\U00000000\"]\n",
                (2, 20),
                "defaults.ssh_keys holds a NUL",
            ),
            (
                "[images.\"x\\u0000\".lxc]\nurl = \"images:debian/bookworm\"\n",
                (1, 11),
                "images.x\\0 holds a NUL",
            ),
            (
                "[lxc]\nbridge = \"lxcbr0\\nlxc.hook.pre-start = /x\"\n",
                (2, 10),
                "not an interface name",
            ),
            (
                "[lxc]\nprivileged_bridge = \"..\"\n",
                (2, 21),
                "not an interface name",
            ),
            (
                "[lxc]\nimage_server = \"http://mirror.example.org\"\n",
                (2, 16),
                "plain http is only for a server on this host",
            ),
            (
                "[lxc]\nimage_server = \"ftp://mirror.example.org\"\n",
                (2, 16),
                "not an https:// URL",
            ),
            (
                "[lxc]\nimage_server = \"https://\"\n",
                (2, 16),
                "names no host",
            ),
            ("[state]\ndir = \"\"\n", (2, 7), "not an absolute path"),
            ("[state]\ndir = \"state\"\n", (2, 7), "not an absolute path"),
            (
                "[vm]\nstorage_dir = \"vm\"\n",
                (2, 15),
                "not an absolute path",
            ),
            (
                "[vm]\ntemplates_dir = \"t\"\n",
                (2, 17),
                "not an absolute path",
            ),
        ];
        for (text, (line, column), msg) in cases {
            let env = Env::new();
            let files = env.files(Some(text), None, None);
            let err = load(&files, &[]).unwrap_err();
            assert!(err.is_bad_input(), "{text:?}: {err}");
            match &err {
                Error::ConfigSyntax {
                    file,
                    line: l,
                    column: c,
                    message,
                } => {
                    assert_eq!(file, &files.host);
                    assert_eq!((*l, *c), (*line, *column), "{text:?}: {err}");
                    assert!(message.contains(msg), "{text:?}: {message}");
                    assert!(!message.contains('\n'));
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_override_is_bad_input() {
        let env = Env::new();
        let files = env.files(None, None, None);
        let err = load(
            &files,
            &[Override {
                key: "defaults.autostart",
                value: "maybe".into(),
                flag: "--autostart",
            }],
        )
        .unwrap_err();
        assert!(err.is_bad_input());
    }

    #[test]
    fn user_file_location_follows_xdg() {
        // from_env reads the process environment; assert the pure part of the rule instead.
        let f = ConfigFiles {
            host: HOST_CONFIG.into(),
            user: Some("/home/u/.config/nox/nox.toml".into()),
            explicit: None,
        };
        assert_eq!(
            f.candidates(),
            vec![
                (PathBuf::from(HOST_CONFIG), false),
                (PathBuf::from("/home/u/.config/nox/nox.toml"), false)
            ]
        );
    }
}
