//! `nox image list|rm|prune` over the VM cache: its verified bases and the templates made from
//! them, decided together, because a template's disk overlays its base and a clone's disk
//! overlays its template. What to take is pure logic ([`plan_rm`], [`plan_prune`]); the rest
//! takes the locks, asks libvirt which VMs use what, and removes.

use std::collections::HashSet;
use std::path::Path;

use nox_core::image::{CachedImage, ImageKind, TemplateShape};
use nox_core::lock::LockGuard;
use nox_core::{BackendKind, Error};

use crate::template::{self, Entry, TemplateNote};
use crate::{images, list, LibvirtBackend};

/// What one existing VM holds on to: the base its disk overlays (through its template, for
/// a clone) and, for a clone, that template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmUse {
    pub vm: String,
    pub image_checksum: String,
    pub template: Option<String>,
    /// Its disk overlays this storage dir's cached base: a VM booted cold from this cache. A
    /// clone overlays its template (which links its own base), and a VM of another storage dir
    /// its own cache, so neither keeps a base of this cache.
    pub on_this_cache: bool,
}

/// What `rm` or `prune` removes: templates first (their disks overlay the bases), then bases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub templates: Vec<Entry>,
    pub bases: Vec<CachedImage>,
}

/// Every base, then every finished template, by image name (a base before its templates).
pub fn list(b: &LibvirtBackend) -> Vec<CachedImage> {
    let bases = images::list(&b.config.vm.storage_dir);
    let templates: Vec<CachedImage> = template::list(&b.config.vm.templates_dir())
        .iter()
        .map(|t| note_row(&t.dir, Some(&t.note), &bases))
        .collect();
    let mut all = bases;
    all.extend(templates);
    all.sort_by(|a, b| a.name.cmp(&b.name).then(a.kind.cmp(&b.kind)));
    all
}

/// A template as `nox image list` shows it: under its image's name, with its base's
/// checksum and URL. An entry without a readable note (a build that never finished) shows its
/// directory.
pub fn note_row(dir: &Path, note: Option<&TemplateNote>, bases: &[CachedImage]) -> CachedImage {
    let checksum = note.map(|n| n.image_checksum.clone()).unwrap_or_default();
    CachedImage {
        name: note.map(|n| n.image.clone()).unwrap_or_default(),
        backend: BackendKind::Vm,
        kind: ImageKind::Template,
        url: bases
            .iter()
            .find(|i| i.checksum == checksum && !checksum.is_empty())
            .map(|i| i.url.clone())
            .unwrap_or_default(),
        checksum,
        path: dir.to_path_buf(),
        size_bytes: files_size(dir),
        virtual_size_bytes: note.map_or(0, |n| n.disk_bytes),
        shape: note.map(|n| TemplateShape {
            key: n.key.clone(),
            cpus: n.cpus,
            memory_bytes: n.memory_bytes,
            disk_bytes: n.disk_bytes,
            network: n.network.clone(),
            accel: n.accel.clone(),
        }),
        created_at: note.map(|n| n.created_at.clone()),
    }
}

/// The bytes removing `dir` frees (a template's directory holds no subdirectories). Its
/// `base.qcow2` is a hard link to the cached base while that is cached: those bytes are the
/// base's row's, and stay while the cache has them, so a file with another link counts nothing.
fn files_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file() && m.nlink() == 1)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What `nox image rm WHICH` takes: the bases named or summed `WHICH`, and the templates of
/// that image (by name, by its base's checksum, or by the template's own key). Refused, with
/// nothing taken, while a VM uses any of it.
pub fn plan_rm(
    which: &str,
    bases: Vec<CachedImage>,
    templates: Vec<Entry>,
    uses: &[VmUse],
) -> Result<Plan, Error> {
    let bases: Vec<CachedImage> = bases
        .into_iter()
        .filter(|i| i.name == which || i.checksum == which)
        .collect();
    let sums: HashSet<&str> = bases.iter().map(|i| i.checksum.as_str()).collect();
    let templates: Vec<Entry> = templates
        .into_iter()
        .filter(|t| {
            t.key == which
                || t.note.as_ref().is_some_and(|n| {
                    n.image == which
                        || n.image_checksum == which
                        || sums.contains(n.image_checksum.as_str())
                })
        })
        .collect();
    if bases.is_empty() && templates.is_empty() {
        return Err(Error::Refused {
            message: format!("no cached image or template {which:?}"),
            hint: "`nox image list` shows the cache".into(),
        });
    }
    for img in &bases {
        let users = users(uses, |u| {
            u.on_this_cache && u.image_checksum == img.checksum
        });
        if !users.is_empty() {
            return Err(Error::Refused {
                message: format!("image {} is the base of the VMs {users}", img.name),
                hint: "delete those VMs first (`nox delete NAME`)".into(),
            });
        }
    }
    for t in &templates {
        let users = users(uses, |u| u.template.as_deref() == Some(t.key.as_str()));
        if !users.is_empty() {
            return Err(Error::Refused {
                message: format!("template {} is the disk of the VMs {users}", name(t)),
                hint: "delete those VMs first (`nox delete NAME`)".into(),
            });
        }
    }
    Ok(Plan { templates, bases })
}

/// What `nox image prune` takes: every base no VM uses (a VM backup needs no base: its full
/// backup holds the whole disk, backup/mod.rs), then every template no VM is a clone of whose
/// base is gone (or goes now), or which no create would restore (an older nox's, or a build
/// that never finished). A finished template whose base stays is kept: it is what makes the
/// next create of its shape fast.
pub fn plan_prune(bases: Vec<CachedImage>, templates: Vec<Entry>, uses: &[VmUse]) -> Plan {
    let pairs: Vec<(String, String)> = uses
        .iter()
        .filter(|u| u.on_this_cache)
        .map(|u| (u.vm.clone(), u.image_checksum.clone()))
        .collect();
    let gone = images::unused(bases.clone(), &pairs);
    let staying: HashSet<String> = bases
        .into_iter()
        .filter(|i| !gone.contains(i))
        .map(|i| i.checksum)
        .collect();
    let templates = templates
        .into_iter()
        .filter(|t| {
            let cloned = uses
                .iter()
                .any(|u| u.template.as_deref() == Some(t.key.as_str()));
            let base_gone = t
                .note
                .as_ref()
                .is_none_or(|n| !staying.contains(&n.image_checksum));
            !cloned && (!t.usable || base_gone)
        })
        .collect();
    Plan {
        templates,
        bases: gone,
    }
}

/// `debian-12 (KEY)`, or the key alone for a template without a note.
fn name(t: &Entry) -> String {
    match &t.note {
        Some(n) => format!("{} ({})", n.image, t.key),
        None => t.key.clone(),
    }
}

fn users(uses: &[VmUse], pred: impl Fn(&VmUse) -> bool) -> String {
    uses.iter()
        .filter(|u| pred(u))
        .map(|u| u.vm.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `nox image rm WHICH` on the VM cache.
pub fn remove(b: &LibvirtBackend, which: &str) -> Result<Vec<CachedImage>, Error> {
    let storage_dir = &b.config.vm.storage_dir;
    let _cache = images::lock_cache(storage_dir)?;
    b.refuse_beside_creates()?;
    let templates_dir = b.config.vm.templates_dir();
    stop_abandoned_builds(b)?;
    let _held = hold_templates(&templates_dir)?;
    let bases = images::list(storage_dir);
    let plan = plan_rm(
        which,
        bases.clone(),
        template::entries(&templates_dir),
        &vm_uses(b)?,
    )?;
    execute(plan, &bases)
}

/// `nox image prune` on the VM cache.
pub fn prune(b: &LibvirtBackend) -> Result<Vec<CachedImage>, Error> {
    let storage_dir = &b.config.vm.storage_dir;
    let templates_dir = b.config.vm.templates_dir();
    // An empty cache needs no libvirtd: a container-only host prunes without one.
    if images::list(storage_dir).is_empty() && template::entries(&templates_dir).is_empty() {
        return Ok(Vec::new());
    }
    let _cache = images::lock_cache(storage_dir)?;
    b.refuse_beside_creates()?;
    stop_abandoned_builds(b)?;
    let _held = hold_templates(&templates_dir)?;
    let bases = images::list(storage_dir);
    let plan = plan_prune(
        bases.clone(),
        template::entries(&templates_dir),
        &vm_uses(b)?,
    );
    execute(plan, &bases)
}

/// A build a killed nox left still runs its guest on the files prune would take: stop it
/// first (before this command holds the locks, which that recovery needs free).
fn stop_abandoned_builds(b: &LibvirtBackend) -> Result<(), Error> {
    for done in template::remove_abandoned_builds(b, &b.conn()?)? {
        tracing::info!("{done}");
    }
    Ok(())
}

/// Takes every template's lock, or refuses while one is held: a build in progress
/// (`nox image warm`, or a create's first of its shape) holds it, and its base must not go
/// from under it. Held until the removal is done; nothing reads a template without it.
fn hold_templates(templates_dir: &Path) -> Result<Vec<LockGuard>, Error> {
    let Ok(read) = std::fs::read_dir(templates_dir) else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<String> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".lock") {
                Some(key) => Some(key.to_string()),
                None if e.file_type().is_ok_and(|t| t.is_dir()) => Some(name),
                None => None,
            }
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut held = Vec::new();
    for key in keys {
        let Some(guard) = nox_core::lock::try_lock(&template::lock_path(templates_dir, &key))?
        else {
            return Err(Error::Refused {
                message: format!(
                    "nox is building template {key} now, from an image this command could remove"
                ),
                hint: "run it again once that build (`nox image warm` or a create) has finished"
                    .into(),
            });
        };
        held.push(guard);
    }
    Ok(held)
}

/// Removes what `plan` names, templates first, and returns it as `nox image list` shows it
/// (with the sizes it had).
fn execute(plan: Plan, bases: &[CachedImage]) -> Result<Vec<CachedImage>, Error> {
    let mut removed = Vec::new();
    for t in &plan.templates {
        let row = note_row(&t.dir, t.note.as_ref(), bases);
        template::remove(&t.dir)?;
        removed.push(row);
    }
    for img in plan.bases {
        images::delete(&img)?;
        removed.push(img);
    }
    Ok(removed)
}

/// What each existing VM uses. A failed listing is an error, never "no VMs": prune would
/// take every base.
fn vm_uses(b: &LibvirtBackend) -> Result<Vec<VmUse>, Error> {
    let conn = b.conn()?;
    let domains = conn
        .list_all_domains(0)
        .map_err(|e| crate::error::LibvirtError::call("listing domains", e))?;
    Ok(domains
        .iter()
        .filter_map(|d| {
            let record = list::record(d)?;
            Some(VmUse {
                vm: d.name().ok()?,
                on_this_cache: record.template.is_none()
                    && record.dir.starts_with(&b.config.vm.storage_dir),
                image_checksum: record.image_checksum,
                template: record.template,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn base(name: &str, checksum: &str) -> CachedImage {
        CachedImage {
            name: name.into(),
            backend: BackendKind::Vm,
            kind: ImageKind::Base,
            checksum: checksum.into(),
            path: format!("/c/{checksum}.qcow2").into(),
            url: format!("https://example.org/{name}.qcow2"),
            size_bytes: 1,
            virtual_size_bytes: 1,
            shape: None,
            created_at: None,
        }
    }

    fn note(key: &str, image: &str, checksum: &str) -> TemplateNote {
        TemplateNote {
            version: 1,
            key: key.into(),
            image: image.into(),
            image_checksum: checksum.into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            disk_bytes: 10 << 30,
            network: "user".into(),
            accel: "qemu".into(),
            mac: "52:54:00:00:00:01".into(),
            created_at: "2026-11-27T03:00:00Z".into(),
            size_bytes: 0,
        }
    }

    fn template(key: &str, image: &str, checksum: &str) -> Entry {
        Entry {
            key: key.into(),
            dir: PathBuf::from(format!("/t/{key}")),
            note: Some(note(key, image, checksum)),
            usable: true,
        }
    }

    fn cold(vm: &str, checksum: &str) -> VmUse {
        VmUse {
            vm: vm.into(),
            image_checksum: checksum.into(),
            template: None,
            on_this_cache: true,
        }
    }

    fn clone_of(vm: &str, checksum: &str, key: &str) -> VmUse {
        VmUse {
            template: Some(key.into()),
            on_this_cache: false,
            ..cold(vm, checksum)
        }
    }

    fn keys(p: &Plan) -> Vec<&str> {
        p.templates.iter().map(|t| t.key.as_str()).collect()
    }

    fn sums(p: &Plan) -> Vec<&str> {
        p.bases.iter().map(|i| i.checksum.as_str()).collect()
    }

    #[test]
    fn rm_by_name_takes_the_base_and_every_template_of_it() {
        let bases = vec![base("debian-12", "sha256:1"), base("other", "sha256:2")];
        let templates = vec![
            template("k1", "debian-12", "sha256:1"),
            template("k2", "debian-12", "sha256:1"),
            template("k3", "other", "sha256:2"),
            // Of an older debian-12 whose base was removed: still debian-12's.
            template("k4", "debian-12", "sha256:0"),
        ];
        let p = plan_rm("debian-12", bases.clone(), templates.clone(), &[]).unwrap();
        assert_eq!(keys(&p), ["k1", "k2", "k4"]);
        assert_eq!(sums(&p), ["sha256:1"]);
        // By checksum: the base and the templates made from it.
        let p = plan_rm("sha256:2", bases.clone(), templates.clone(), &[]).unwrap();
        assert_eq!((keys(&p), sums(&p)), (vec!["k3"], vec!["sha256:2"]));
        // By key: that template alone.
        let p = plan_rm("k2", bases, templates, &[]).unwrap();
        assert_eq!((keys(&p), sums(&p)), (vec!["k2"], vec![]));
    }

    #[test]
    fn rm_refuses_naming_the_vms_and_takes_nothing() {
        let bases = vec![base("debian-12", "sha256:1")];
        let templates = vec![template("k1", "debian-12", "sha256:1")];
        // A cold VM holds the base; a clone holds its template (which links its own base).
        let e = plan_rm(
            "debian-12",
            bases.clone(),
            templates.clone(),
            &[clone_of("web", "sha256:1", "k1"), cold("db", "sha256:1")],
        )
        .unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("base of the VMs db"), "{e}");
        let e = plan_rm(
            "debian-12",
            bases.clone(),
            templates.clone(),
            &[clone_of("web", "sha256:1", "k1")],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("template debian-12 (k1) is the disk of the VMs web"),
            "{e}"
        );
        // A VM booted cold from another storage dir's cache holds nothing of this one.
        let elsewhere = VmUse {
            on_this_cache: false,
            ..cold("other", "sha256:1")
        };
        let p = plan_rm("debian-12", bases.clone(), Vec::new(), &[elsewhere]).unwrap();
        assert_eq!(sums(&p), ["sha256:1"]);
        // The template alone, by key, is refused for its clone only.
        let e = plan_rm(
            "k1",
            bases.clone(),
            templates.clone(),
            &[clone_of("web", "sha256:1", "k1")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("template debian-12 (k1)") && e.to_string().contains("web"));
        // A cold VM on the base does not hold the template.
        let p = plan_rm(
            "k1",
            bases.clone(),
            templates.clone(),
            &[cold("db", "sha256:1")],
        )
        .unwrap();
        assert_eq!(keys(&p), ["k1"]);
        let e = plan_rm("nothing", bases, templates, &[]).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("\"nothing\""),
            "{e}"
        );
    }

    #[test]
    fn prune_takes_templates_whose_base_goes_or_that_no_create_would_restore() {
        let bases = vec![
            base("kept", "sha256:1"),
            base("unused", "sha256:2"),
            base("cloned", "sha256:3"),
        ];
        let stale = |key: &str, note: Option<TemplateNote>| Entry {
            key: key.into(),
            dir: PathBuf::from(format!("/t/{key}")),
            note,
            usable: false,
        };
        let templates = vec![
            // Its base stays (a cold VM uses it): kept, for the next create.
            template("a", "kept", "sha256:1"),
            // Its base is unused and goes now: it goes too.
            template("b", "unused", "sha256:2"),
            // Its base was removed before.
            template("c", "gone", "sha256:9"),
            // Its base is gone but a clone still overlays it: kept.
            template("d", "gone", "sha256:9"),
            // Half-made or an older nox's, with a base that stays: goes.
            stale("e", Some(note("e", "kept", "sha256:1"))),
            stale("f", None),
            // The template of a clone: kept. Its base's cache entry goes, as no VM booted cold
            // from it: the template links its own base.
            template("g", "cloned", "sha256:3"),
        ];
        let uses = [
            cold("db", "sha256:1"),
            clone_of("web", "sha256:9", "d"),
            clone_of("app", "sha256:3", "g"),
        ];
        let p = plan_prune(bases, templates, &uses);
        assert_eq!(keys(&p), ["b", "c", "e", "f"]);
        assert_eq!(sums(&p), ["sha256:2", "sha256:3"]);
    }

    /// A base link the cache shares is the base's row's; once the cache lets go, the
    /// template's.
    #[test]
    fn a_templates_size_leaves_out_the_base_the_cache_shares() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k1");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("state.sav"), "1234").unwrap();
        let cached = tmp.path().join("cached.qcow2");
        std::fs::write(&cached, "base bytes").unwrap();
        std::fs::hard_link(&cached, dir.join("base.qcow2")).unwrap();
        assert_eq!(files_size(&dir), 4);
        std::fs::remove_file(&cached).unwrap();
        assert_eq!(files_size(&dir), 14);
    }

    #[test]
    fn a_template_row_carries_its_shape_and_its_bases_url() {
        let n = note("k1", "debian-12", "sha256:1");
        let row = note_row(
            Path::new("/nonexistent/k1"),
            Some(&n),
            &[base("debian-12", "sha256:1")],
        );
        assert_eq!(row.kind, ImageKind::Template);
        assert_eq!(row.url, "https://example.org/debian-12.qcow2");
        assert_eq!(row.virtual_size_bytes, 10 << 30);
        let shape = row.shape.unwrap();
        assert_eq!((shape.key.as_str(), shape.cpus), ("k1", 2));
        assert_eq!(row.created_at.as_deref(), Some("2026-11-27T03:00:00Z"));
        // Without its base, no URL; without a note, the directory alone.
        assert_eq!(note_row(Path::new("/x"), Some(&n), &[]).url, "");
        let bare = note_row(Path::new("/x"), None, &[]);
        assert_eq!((bare.name.as_str(), bare.shape), ("", None));
    }
}
