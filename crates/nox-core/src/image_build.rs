//! Images built on this host from a distribution's own package archive (`build:DIST/RELEASE`
//! sources, `nox image build`), and the seam to the builder.
//!
//! nox-core only names what can be built and how a backend asks for it; the builder itself
//! (debootstrap, disk and rootfs packing) lives in the `nox-image` crate and is handed to the
//! backends through [`crate::host::Host`], so backends never depend on it.

use std::fmt;
use std::time::Duration;

use crate::config::ImageSource;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::BackendKind;

/// A distribution nox can build from its archive with debootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    Debian,
    Ubuntu,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Debian => "debian",
            Distribution::Ubuntu => "ubuntu",
        })
    }
}

/// One release nox knows how to build: its archive suite and the image name nox gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Release {
    pub distribution: Distribution,
    /// The archive's suite (codename): `bookworm`.
    pub suite: &'static str,
    /// The version users name it by: `12`.
    pub version: &'static str,
}

/// The releases `build:` sources may name. A release is listed only once its recipe has been
/// built and booted (see docs/images.md).
pub const RELEASES: &[Release] = &[
    Release {
        distribution: Distribution::Debian,
        suite: "bookworm",
        version: "12",
    },
    Release {
        distribution: Distribution::Debian,
        suite: "trixie",
        version: "13",
    },
    Release {
        distribution: Distribution::Ubuntu,
        suite: "noble",
        version: "24.04",
    },
];

impl Release {
    /// `debian/bookworm`, `debian/12`, `ubuntu/noble` or `ubuntu/24.04`.
    pub fn parse(spec: &str) -> Result<Release> {
        let known = || {
            RELEASES
                .iter()
                .map(|r| format!("{}/{}", r.distribution, r.suite))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (dist, release) = spec.split_once('/').ok_or_else(|| {
            Error::Usage(format!(
                "build source {spec:?} must be DISTRIBUTION/RELEASE, one of: {}",
                known()
            ))
        })?;
        RELEASES
            .iter()
            .find(|r| {
                r.distribution.to_string() == dist && (r.suite == release || r.version == release)
            })
            .copied()
            .ok_or_else(|| {
                Error::Usage(format!("nox cannot build {spec:?}; it builds: {}", known()))
            })
    }

    /// `debian-12`: the `[images]` name of the built-in entry for this release.
    pub fn image_name(&self) -> String {
        format!("{}-{}", self.distribution, self.version)
    }

    /// `build:debian/bookworm`.
    pub fn source_url(&self) -> String {
        format!("build:{}/{}", self.distribution, self.suite)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.distribution, self.version, self.suite)
    }
}

/// The release a `build:DIST/RELEASE` source names, `None` for any other source.
pub fn build_release(source: &ImageSource) -> Option<Result<Release>> {
    source.url.strip_prefix("build:").map(Release::parse)
}

/// Builds images from a distribution's archive. The real one is `nox_image::Builder`.
pub trait ImageBuilder: Send + Sync + fmt::Debug {
    /// Builds `release` for each of `kinds` from one tree, or finds it built; returns each
    /// result as a local source with its SHA-256, in the order of `kinds`, for the backends'
    /// image caches to take in like any download.
    fn build(
        &self,
        release: Release,
        kinds: &[BackendKind],
        progress: &dyn Progress,
    ) -> Result<Vec<ImageSource>>;

    /// Roughly how long a build from scratch takes here, for messages.
    fn typical_duration(&self) -> Duration;
}

/// A nox with no builder (unit tests, or a host without one): `build:` sources fail with a
/// clear message, so the next source, if any, is tried.
#[derive(Debug, Default)]
pub struct NoBuilder;

impl ImageBuilder for NoBuilder {
    fn build(
        &self,
        release: Release,
        _: &[BackendKind],
        _: &dyn Progress,
    ) -> Result<Vec<ImageSource>> {
        Err(Error::failed(
            format!("this nox cannot build {release} images"),
            "name a downloadable source in [images]",
        ))
    }

    fn typical_duration(&self) -> Duration {
        Duration::ZERO
    }
}

/// Takes an image from the first of `sources` that works, in order: `attempt` gets each
/// download source as it is, and each `build:` source as the builder's result. A source that
/// fails is reported in one line (what failed, what nox does instead) before the next one is
/// tried; the last failure is the error. Bad input and interruptions never fall through.
pub fn first_working<T>(
    image: &str,
    kind: BackendKind,
    sources: &[ImageSource],
    builder: &dyn ImageBuilder,
    progress: &dyn Progress,
    mut attempt: impl FnMut(&ImageSource) -> Result<T>,
) -> Result<T> {
    let mut last = None;
    for (i, source) in sources.iter().enumerate() {
        let result = match build_release(source) {
            Some(release) => release.and_then(|r| {
                builder
                    .build(r, &[kind], progress)
                    .and_then(|built| attempt(&built[0]))
            }),
            None => attempt(source),
        };
        let e = match result {
            Ok(v) => return Ok(v),
            Err(e) if e.is_bad_input() || crate::interrupt::requested() => return Err(e),
            Err(e) => e,
        };
        if let Some(next) = sources.get(i + 1) {
            progress.warn(&fallback_message(image, source, &e, next, builder));
        }
        last = Some(e);
    }
    Err(last.unwrap_or_else(|| {
        Error::Usage(format!(
            "image {image:?} has no [images.{image}.{kind}] source"
        ))
    }))
}

fn fallback_message(
    image: &str,
    failed: &ImageSource,
    error: &Error,
    next: &ImageSource,
    builder: &dyn ImageBuilder,
) -> String {
    let what = match build_release(failed) {
        Some(_) => format!("building {image} failed ({error})"),
        None => format!(
            "getting {image} from {} failed ({error})",
            crate::fetch::expand_url(&failed.url)
        ),
    };
    match build_release(next) {
        Some(Ok(r)) => {
            let minutes = builder.typical_duration().as_secs().div_ceil(60).max(1);
            format!(
                "{what}; building it from the {} archive instead (usually about {minutes} min)",
                r.distribution.archive_name()
            )
        }
        _ => format!(
            "{what}; trying {} instead",
            crate::fetch::expand_url(&next.url)
        ),
    }
}

impl Distribution {
    /// How users call its package archive.
    pub fn archive_name(&self) -> &'static str {
        match self {
            Distribution::Debian => "Debian",
            Distribution::Ubuntu => "Ubuntu",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Debug)]
    struct Built;
    impl ImageBuilder for Built {
        fn build(
            &self,
            r: Release,
            _: &[BackendKind],
            _: &dyn Progress,
        ) -> Result<Vec<ImageSource>> {
            Ok(vec![src(&format!("file:///built/{}", r.suite))])
        }
        fn typical_duration(&self) -> Duration {
            Duration::from_secs(200)
        }
    }

    fn src(url: &str) -> ImageSource {
        ImageSource {
            url: url.into(),
            checksum: None,
            checksum_url: None,
        }
    }

    #[derive(Default)]
    struct Warnings(RefCell<Vec<String>>);
    impl Progress for Warnings {
        fn step(&self, _: &str) {}
        fn warn(&self, m: &str) {
            self.0.borrow_mut().push(m.into());
        }
        fn bytes(&self, _: u64, _: Option<u64>) {}
        fn waiting(&self, _: &str, _: Duration) {}
        fn done(&self) {}
    }

    #[test]
    fn releases_parse_by_codename_or_version() {
        assert_eq!(Release::parse("debian/12").unwrap().suite, "bookworm");
        assert_eq!(Release::parse("debian/trixie").unwrap().version, "13");
        assert_eq!(
            Release::parse("ubuntu/24.04").unwrap().image_name(),
            "ubuntu-24.04"
        );
        for bad in ["debian", "debian/sid", "arch/rolling", "/12", ""] {
            assert!(Release::parse(bad).unwrap_err().is_bad_input(), "{bad}");
        }
    }

    #[test]
    fn a_failed_download_falls_back_to_a_build_and_says_so_once() {
        let sources = [src("https://example.org/x.qcow2"), src("build:debian/12")];
        let warnings = Warnings::default();
        let got = first_working("d", BackendKind::Vm, &sources, &Built, &warnings, |s| {
            if s.url.starts_with("https:") {
                Err(Error::failed("no route to host", "check the network"))
            } else {
                Ok(s.url.clone())
            }
        })
        .unwrap();
        assert_eq!(got, "file:///built/bookworm");
        let w = warnings.0.borrow();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("https://example.org/x.qcow2")
                && w[0].contains("no route to host")
                && w[0].contains("Debian archive")
                && w[0].contains("about 4 min"),
            "{}",
            w[0]
        );
        assert!(!w[0].contains('\n'));
    }

    #[test]
    fn bad_input_never_falls_through_and_the_last_error_is_kept() {
        let sources = [src("https://a/x"), src("https://b/x")];
        let calls = RefCell::new(0);
        let e = first_working(
            "d",
            BackendKind::Vm,
            &sources,
            &NoBuilder,
            &Warnings::default(),
            |_| {
                *calls.borrow_mut() += 1;
                Err::<(), _>(Error::Usage("bad".into()))
            },
        )
        .unwrap_err();
        assert!(e.is_bad_input());
        assert_eq!(*calls.borrow(), 1);

        let e = first_working(
            "d",
            BackendKind::Vm,
            &sources,
            &NoBuilder,
            &Warnings::default(),
            |s| Err::<(), _>(Error::failed(format!("down: {}", s.url), "retry")),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "down: https://b/x");
    }
}
