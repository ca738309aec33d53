//! libvirt's `domaincheckpoint` and `domainbackup` XML for nox's backups, from typed structs,
//! pinned by golden files.

use serde::Serialize;

use super::{DISK, SEED};

mod schema {
    //! libvirt's `domaincheckpoint` and `domainbackup` schemas, as much as nox uses.
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename = "domaincheckpoint")]
    pub struct Checkpoint<'a> {
        pub name: &'a str,
        pub description: &'a str,
        pub disks: CheckpointDisks,
    }

    #[derive(Serialize)]
    pub struct CheckpointDisks {
        pub disk: Vec<CheckpointDisk>,
    }

    #[derive(Serialize)]
    pub struct CheckpointDisk {
        #[serde(rename = "@name")]
        pub name: &'static str,
        /// `bitmap`: track writes in a persistent dirty bitmap; `no`: not at all.
        #[serde(rename = "@checkpoint")]
        pub checkpoint: &'static str,
    }

    #[derive(Serialize)]
    #[serde(rename = "domainbackup")]
    pub struct Backup<'a> {
        #[serde(rename = "@mode")]
        pub mode: &'static str,
        /// The checkpoint an incremental backup copies the changes since.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub incremental: Option<&'a str>,
        pub disks: BackupDisks<'a>,
    }

    #[derive(Serialize)]
    pub struct BackupDisks<'a> {
        pub disk: Vec<BackupDisk<'a>>,
    }

    #[derive(Serialize)]
    pub struct BackupDisk<'a> {
        #[serde(rename = "@name")]
        pub name: &'static str,
        #[serde(rename = "@backup")]
        pub backup: &'static str,
        #[serde(rename = "@type", skip_serializing_if = "Option::is_none")]
        pub kind: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub target: Option<Target<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub driver: Option<Driver>,
    }

    #[derive(Serialize)]
    pub struct Target<'a> {
        #[serde(rename = "@file")]
        pub file: &'a str,
    }

    #[derive(Serialize)]
    pub struct Driver {
        #[serde(rename = "@type")]
        pub format: &'static str,
    }
}

fn render<T: Serialize>(value: &T) -> String {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    // Strings only: serializing cannot fail.
    let _ = value.serialize(ser);
    out.push('\n');
    out
}

/// The checkpoint a backup creates: a dirty bitmap on the data disk, none on the seed.
pub fn checkpoint_xml(name: &str) -> String {
    render(&schema::Checkpoint {
        name,
        description: "nox backup point; the next incremental backup starts here",
        disks: schema::CheckpointDisks {
            disk: vec![
                schema::CheckpointDisk {
                    name: DISK,
                    checkpoint: "bitmap",
                },
                schema::CheckpointDisk {
                    name: SEED,
                    checkpoint: "no",
                },
            ],
        },
    })
}

/// A push-mode backup of the data disk into `target` (qcow2), incremental since `since`.
pub fn backup_xml(target: &str, since: Option<&str>) -> String {
    render(&schema::Backup {
        mode: "push",
        incremental: since,
        disks: schema::BackupDisks {
            disk: vec![
                schema::BackupDisk {
                    name: DISK,
                    backup: "yes",
                    kind: Some("file"),
                    target: Some(schema::Target { file: target }),
                    driver: Some(schema::Driver { format: "qcow2" }),
                },
                schema::BackupDisk {
                    name: SEED,
                    backup: "no",
                    kind: None,
                    target: None,
                    driver: None,
                },
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        nox_core::golden::assert_golden(&dir, name, actual);
    }

    #[test]
    fn golden_backup_and_checkpoint_xml() {
        golden("checkpoint.xml", &checkpoint_xml("nox-20261125T225012Z"));
        golden(
            "backup-full.xml",
            &backup_xml(
                "/var/lib/nox/vm/instances/web/backup-20261125T225012Z.qcow2",
                None,
            ),
        );
        golden(
            "backup-incremental.xml",
            &backup_xml(
                "/var/lib/nox/vm/instances/web/backup-20261125T230000Z.qcow2",
                Some("nox-20261125T225012Z"),
            ),
        );
    }
}
