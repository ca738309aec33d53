//! The root tree: debootstrap from the archive, then the files every image shares.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nox_core::host::{Cmd, Runner};
use nox_core::{Error, Result};

use crate::recipe::{Recipe, KERNEL_CMDLINE, TREE_FILES};

/// debootstrap's minbase plus the recipe's packages. apt inside debootstrap checks the
/// archive's Release file against the recipe's keyring, and every package against it.
pub fn debootstrap(runner: &dyn Runner, recipe: &Recipe, mirror: &str, tree: &Path) -> Result<()> {
    let (keyring, package) = recipe.keyring;
    if !Path::new(keyring).is_file() {
        return Err(Error::failed(
            format!(
                "{keyring} is missing, so the {} archive cannot be verified",
                recipe.release.distribution.archive_name()
            ),
            format!("install it: apt-get install {package}"),
        ));
    }
    let mut cmd = Cmd::new("debootstrap")
        .package("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--components={}", recipe.components))
        .arg(format!("--include={}", recipe.packages.join(",")))
        .arg(format!("--keyring={keyring}"))
        .arg(recipe.release.suite)
        .arg(tree)
        .arg(mirror);
    if let Some(script) = recipe.script {
        cmd = cmd.arg(script);
    }
    runner.run(&cmd).map(|_| ()).map_err(|e| {
        Error::failed(
            format!("debootstrap of {} from {mirror} failed: {e}", recipe.release),
            "check that this host reaches the archive (or set [build] debian_mirror / ubuntu_mirror)",
        )
    })
}

/// The files every image gets; no identity of its own (machine-id, SSH host keys), so each
/// instance makes its own on first boot; no package caches; an extlinux config naming the
/// kernel debootstrap installed.
pub fn configure(tree: &Path) -> Result<()> {
    for f in TREE_FILES {
        write(tree, f.path, f.contents, f.mode)?;
    }
    write(tree, "etc/machine-id", "", 0o444)?;
    let _ = fs::remove_file(tree.join("var/lib/dbus/machine-id"));
    for e in read_dir(&tree.join("etc/ssh"))? {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            remove(&e.path())?;
        }
    }
    // Package caches are a third of a minbase tree and useless in a guest.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for e in read_dir(&tree.join(dir))? {
            if e.path().is_file() {
                remove(&e.path())?;
            }
        }
    }
    let boot = tree.join("boot");
    let newest = |prefix: &str| -> Result<String> {
        let mut names: Vec<String> = read_dir(&boot)?
            .into_iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names.pop().ok_or_else(|| {
            Error::failed(
                format!("debootstrap installed no /boot/{prefix}*"),
                "the recipe's kernel package is missing from the archive",
            )
        })
    };
    let (kernel, initrd) = (newest("vmlinuz-")?, newest("initrd.img-")?);
    write(
        tree,
        "boot/extlinux/extlinux.conf",
        &format!(
            "DEFAULT linux\nTIMEOUT 0\nPROMPT 0\n\nLABEL linux\n  KERNEL /boot/{kernel}\n  \
             INITRD /boot/{initrd}\n  APPEND {KERNEL_CMDLINE}\n"
        ),
        0o644,
    )
}

pub(crate) fn write(tree: &Path, rel: &str, contents: &str, mode: u32) -> Result<()> {
    let p = tree.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    // A symlink in the tree must not redirect the write onto the host.
    if p.is_symlink() {
        remove(&p)?;
    }
    fs::write(&p, contents).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting the mode of {}", p.display()), e))
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    Ok(fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .collect())
}

pub(crate) fn remove(p: &Path) -> Result<()> {
    fs::remove_file(p).map_err(|e| Error::io(format!("removing {}", p.display()), e))
}
