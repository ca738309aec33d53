//! Every `qemu-img` call the VM backend makes, typed, through the host's [`Runner`]: overlays
//! for new VMs, growing disks, reading an image's facts, and the conversions backups and
//! restores are made of.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use nox_core::fetch::io_or_disk_full;
use nox_core::host::{Cmd, Runner};
use nox_core::{Error, Progress};

fn qemu_img() -> Cmd {
    Cmd::new("qemu-img").package("qemu-utils")
}

/// A qcow2 overlay on `base`, grown to `size`: the VM writes only its differences.
pub fn create_overlay(
    runner: &dyn Runner,
    base: &Path,
    disk: &Path,
    size: u64,
) -> Result<(), Error> {
    let cmd = qemu_img()
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(disk)
        .arg(size.to_string());
    runner.run(&cmd).map(|_| ()).map_err(|e| {
        if e.to_string().contains("No space left") {
            io_or_disk_full(
                "creating the disk".into(),
                std::io::Error::from_raw_os_error(28),
                disk.parent().unwrap_or(Path::new("/")),
            )
        } else {
            e
        }
    })
}

/// Grows a stopped VM's disk to `size`.
pub fn resize(runner: &dyn Runner, disk: &Path, size: u64) -> Result<(), Error> {
    runner
        .run(
            &qemu_img()
                .args(["resize", "-q"])
                .arg(disk)
                .arg(size.to_string()),
        )
        .map(|_| ())
}

/// What `qemu-img info` says of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgInfo {
    pub format: String,
    pub virtual_size: u64,
    /// A backing file or an external data file, if the image names one.
    pub external: Option<String>,
}

pub fn info(runner: &dyn Runner, path: &Path) -> Result<ImgInfo, Error> {
    let out = runner
        .run(&qemu_img().args(["info", "--output=json"]).arg(path))
        .map_err(|e| {
            Error::failed(
                format!("qemu-img cannot read {}: {e}", path.display()),
                "the image is damaged: `nox image rm` it and pull again",
            )
        })?;
    parse_info(&out.stdout).ok_or_else(|| {
        Error::failure(format!(
            "qemu-img info {}: unreadable output",
            path.display()
        ))
    })
}

fn parse_info(json: &[u8]) -> Option<ImgInfo> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(ImgInfo {
        format: v["format"].as_str()?.to_string(),
        virtual_size: v["virtual-size"].as_u64()?,
        external: v["backing-filename"]
            .as_str()
            .or_else(|| v["format-specific"]["data"]["data-file"].as_str())
            .map(String::from),
    })
}

/// How `convert` writes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Compressed qcow2 (backups).
    Compressed,
    /// Plain qcow2 (restored disks).
    Plain,
    /// A sparse raw image (a restored disk while nox edits its files, see
    /// `backup/identity.rs`).
    Raw,
}

/// `qemu-img convert` of `source` (a path, or a `json:` image spec) into a standalone image
/// `dest`, reporting its percentages as progress. With `unchanged_from`, only what differs
/// from that image is written (the output's backing for the duration: stripped after).
pub fn convert(
    runner: &dyn Runner,
    source: &OsStr,
    dest: &Path,
    output: Output,
    unchanged_from: Option<&Path>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let mut cmd = qemu_img().arg("convert");
    if output == Output::Compressed {
        cmd = cmd.arg("-c");
    }
    let format = if output == Output::Raw {
        "raw"
    } else {
        "qcow2"
    };
    cmd = cmd.args(["-O", format, "-m", "8", "-W", "-p"]);
    if let Some(base) = unchanged_from {
        cmd = cmd.args(["-F", "qcow2", "-B"]).arg(base);
    }
    let cmd = cmd.arg(source).arg(dest);
    let mut percent = PercentParser {
        line: String::new(),
        progress,
    };
    runner.stream_out(&cmd, &mut percent).map(|_| ())
}

/// Sets (or with `None`, removes) `file`'s backing file name without touching its data.
pub fn rebase_unsafe(
    runner: &dyn Runner,
    file: &Path,
    backing: Option<&Path>,
) -> Result<(), Error> {
    let mut cmd = qemu_img().args(["rebase", "-u"]);
    cmd = match backing {
        Some(b) => cmd.args(["-F", "qcow2", "-b"]).arg(b),
        None => cmd.args(["-b", ""]),
    };
    runner.run(&cmd.arg(file)).map(|_| ())
}

/// Turns `qemu-img -p`'s "    (42.50/100%)\r" into progress (in hundredths of a percent).
struct PercentParser<'p> {
    line: String,
    progress: &'p dyn Progress,
}

impl Write for PercentParser<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for ch in String::from_utf8_lossy(buf).chars() {
            if ch == '\r' || ch == '\n' {
                if let Some(p) = percent(&self.line) {
                    self.progress.bytes((p * 100.0) as u64, Some(10_000));
                }
                self.line.clear();
            } else {
                self.line.push(ch);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn percent(line: &str) -> Option<f64> {
    line.trim()
        .strip_prefix('(')
        .and_then(|l| l.split('/').next())
        .and_then(|p| p.parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nox_core::host::fake::FakeRunner;
    use nox_core::progress::Quiet;

    #[test]
    fn convert_argv_and_progress() {
        let r = FakeRunner::default();
        r.on(
            &["qemu-img", "convert"],
            0,
            "    (0.00/100%)\r    (42.50/100%)\r",
            "",
        );
        convert(
            &r,
            "json:{}".as_ref(),
            Path::new("/b/out.qcow2"),
            Output::Compressed,
            Some(Path::new("/b/parent.qcow2")),
            &Quiet,
        )
        .unwrap();
        assert_eq!(
            r.argvs()[0],
            [
                "qemu-img",
                "convert",
                "-c",
                "-O",
                "qcow2",
                "-m",
                "8",
                "-W",
                "-p",
                "-F",
                "qcow2",
                "-B",
                "/b/parent.qcow2",
                "json:{}",
                "/b/out.qcow2"
            ]
        );
        assert_eq!(percent("    (42.50/100%)"), Some(42.5));
        assert_eq!(percent("garbage"), None);
    }

    #[test]
    fn failures_carry_qemu_img_s_reason() {
        let r = FakeRunner::default();
        r.on(
            &["qemu-img", "create"],
            1,
            "",
            "qemu-img: /x: No space left on device",
        );
        let e = create_overlay(&r, Path::new("/base"), Path::new("/x/disk.qcow2"), 1 << 30)
            .unwrap_err();
        assert!(e.to_string().contains("disk"), "{e}");
        r.on(
            &["qemu-img", "resize"],
            1,
            "",
            "qemu-img: Use the --shrink option",
        );
        let e = resize(&r, Path::new("/d"), 1).unwrap_err();
        assert!(e.to_string().contains("--shrink"), "{e}");
    }

    #[test]
    fn info_reads_format_size_and_external_files() {
        let i = parse_info(
            br#"{"format":"qcow2","virtual-size":2147483648,"backing-filename":"/etc/x"}"#,
        )
        .unwrap();
        assert_eq!(i.virtual_size, 2 << 30);
        assert_eq!(i.external.as_deref(), Some("/etc/x"));
        assert!(parse_info(b"not json").is_none());
        let r = FakeRunner::default();
        r.on(
            &["qemu-img", "info"],
            0,
            r#"{"format":"raw","virtual-size":5}"#,
            "",
        );
        assert_eq!(info(&r, Path::new("/i")).unwrap().format, "raw");
        rebase_unsafe(&r, Path::new("/o"), None).unwrap();
        assert_eq!(
            r.argvs().last().unwrap(),
            &["qemu-img", "rebase", "-u", "-b", "", "/o"]
        );
    }
}
