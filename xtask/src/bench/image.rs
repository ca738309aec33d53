//! `cargo xtask bench image [--runs N]`: `nox image build debian-12` (both outputs from one
//! tree) against a plain debootstrap of the same package set plus the plainest conversion to
//! the same two outputs, in the same run, alternating so the mirror's speed hits both alike.
//!
//! The baseline: `debootstrap --variant=minbase --include=…` (nox's own package list), then
//! `mkfs.ext4 -d` of the tree into a raw file and `qemu-img convert -c` (an unbootable disk:
//! no partition table or bootloader), and `tar | xz -T0 -3` of the tree. nox does more (the
//! tree's configuration, a bootable disk, the container's shaping and cloud-init's removal,
//! checksums), so the ratio is what that costs. Target: at most 1.2x.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use nox_core::image_build::Release;
use nox_image::{mirror, Recipe};

use super::harness::{in_bench, secs, stats, ROOT};
use crate::util::sh;

pub fn run(args: &[String]) -> Result<()> {
    let runs: usize = match args {
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number")?,
        [] => 1,
        _ => anyhow::bail!("usage: cargo xtask bench image [--runs N]"),
    };
    in_bench(|b| {
        let recipe = Recipe::for_release(Release::parse("debian/12").expect("known"));
        let mirror = mirror::archive_for(recipe.release, &Default::default());
        let (mut plain, mut nox) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let dir = Path::new(ROOT).join(format!("plain-{run}"));
            let t = Instant::now();
            plain_build(&recipe, &mirror, &dir)?;
            plain.push(secs(t.elapsed()));
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("bench image: run {run}: plain {:.0} s", plain[run]);

            // A build dir of its own each run: nothing is found built.
            let build_dir = Path::new(ROOT).join(format!("builds-{run}"));
            // Not the bench's config: that one's [build] dir is the test bed's, already built.
            let config = format!(
                "[vm]\nstorage_dir = \"{}\"\n\n[lxc]\nlxcpath = \"{}\"\n\n[state]\ndir = \"{}\"\n\n[build]\ndir = \"{}\"\n",
                b.storage.display(),
                Path::new(ROOT).join("lxc").display(),
                Path::new(ROOT).join("state").display(),
                build_dir.display()
            );
            let cfg = Path::new(ROOT).join(format!("nox-{run}.toml"));
            std::fs::write(&cfg, config)?;
            let t = Instant::now();
            let out = b
                .nox()
                .env("NOX_CONFIG", &cfg)
                .args(["image", "build", "debian-12"])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "nox image build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            nox.push(secs(t.elapsed()));
            let _ = std::fs::remove_dir_all(&build_dir);
            let _ = std::fs::remove_dir_all(b.storage.join("images"));
            eprintln!("bench image: run {run}: nox {:.0} s", nox[run]);
        }
        let p = stats(
            "plain debootstrap + mkfs.ext4 -d + qemu-img + tar.xz",
            "s",
            plain,
        );
        let n = stats("nox image build debian-12 (vm + lxc)", "s", nox);
        println!("ratio nox / plain: {:.2}x (target <= 1.2x)", n / p);
        Ok(())
    })
}

fn plain_build(recipe: &Recipe, mirror: &str, dir: &Path) -> Result<()> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(dir)?;
    sh(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", recipe.packages.join(",")))
        .arg(recipe.release.suite)
        .arg(&tree)
        .arg(mirror)
        .stdout(std::process::Stdio::null()))?;
    let raw = dir.join("disk.raw");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-L", "root", "-d"])
        .arg(&tree)
        .arg(&raw)
        .arg("3G"))?;
    sh(Command::new("qemu-img")
        .args(["convert", "-c", "-O", "qcow2"])
        .arg(&raw)
        .arg(dir.join("disk.qcow2")))?;
    sh(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*"])
        .args(["--use-compress-program", "xz -T0 -3"])
        .arg("-C")
        .arg(&tree)
        .arg("-cpf")
        .arg(dir.join("rootfs.tar.xz"))
        .args(["--exclude=./dev/*", "."]))?;
    Ok(())
}
