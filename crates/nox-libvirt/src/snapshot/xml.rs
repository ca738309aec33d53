//! libvirt's `domainsnapshot` XML for nox's snapshots, from typed structs, pinned by golden
//! files; and the few fields nox reads back from it.

use serde::{Deserialize, Serialize};

use crate::backup::{DISK, SEED};

mod schema {
    //! libvirt's `domainsnapshot` schema, as much as nox writes.
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename = "domainsnapshot")]
    pub struct Snapshot<'a> {
        pub name: &'a str,
        pub description: &'a str,
        pub memory: Memory<'a>,
        pub disks: Disks<'a>,
    }

    #[derive(Serialize)]
    pub struct Memory<'a> {
        /// `no`: the disks alone; `external`: RAM saved to `file`.
        #[serde(rename = "@snapshot")]
        pub snapshot: &'static str,
        #[serde(rename = "@file", skip_serializing_if = "Option::is_none")]
        pub file: Option<&'a str>,
    }

    #[derive(Serialize)]
    pub struct Disks<'a> {
        pub disk: Vec<Disk<'a>>,
    }

    #[derive(Serialize)]
    pub struct Disk<'a> {
        #[serde(rename = "@name")]
        pub name: &'static str,
        #[serde(rename = "@snapshot")]
        pub snapshot: &'static str,
        #[serde(rename = "@type", skip_serializing_if = "Option::is_none")]
        pub kind: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub driver: Option<Driver>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source: Option<Source<'a>>,
    }

    #[derive(Serialize)]
    pub struct Driver {
        #[serde(rename = "@type")]
        pub format: &'static str,
    }

    #[derive(Serialize)]
    pub struct Source<'a> {
        #[serde(rename = "@file")]
        pub file: &'a str,
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

/// An external snapshot: the data disk's current file is frozen as the snapshot and a new
/// qcow2 overlay, `overlay`, takes the guest's writes from then on; the seed CD-ROM is left
/// out (read-only, regenerated on restore). With `memory`, RAM is saved to that file.
pub fn snapshot_xml(name: &str, description: &str, overlay: &str, memory: Option<&str>) -> String {
    render(&schema::Snapshot {
        name,
        description,
        memory: schema::Memory {
            snapshot: if memory.is_some() { "external" } else { "no" },
            file: memory,
        },
        disks: schema::Disks {
            disk: vec![
                schema::Disk {
                    name: DISK,
                    snapshot: "external",
                    kind: Some("file"),
                    driver: Some(schema::Driver { format: "qcow2" }),
                    source: Some(schema::Source { file: overlay }),
                },
                schema::Disk {
                    name: SEED,
                    snapshot: "no",
                    kind: None,
                    driver: None,
                    source: None,
                },
            ],
        },
    })
}

/// What nox reads back from a snapshot's XML (libvirt adds much more).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `running`, `shutoff`, `disk-snapshot` (a running VM's disks alone), ...
    #[serde(default)]
    pub state: String,
    /// Seconds since the epoch.
    #[serde(rename = "creationTime", default)]
    pub creation_time: u64,
    #[serde(default)]
    pub memory: Option<ReadMemory>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ReadMemory {
    #[serde(rename = "@snapshot")]
    pub snapshot: String,
    #[serde(rename = "@file", default)]
    pub file: Option<String>,
}

pub fn read(xml: &str) -> Option<Described> {
    quick_xml::de::from_str(xml).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        nox_core::golden::assert_golden(&dir, name, actual);
    }

    #[test]
    fn golden_snapshot_xml() {
        golden(
            "snapshot-disk.xml",
            &snapshot_xml(
                "snap0",
                "nox: consistent: the guest's filesystems were frozen through its agent",
                "/var/lib/nox/vm/instances/web/disk.snap0.qcow2",
                None,
            ),
        );
        golden(
            "snapshot-memory.xml",
            &snapshot_xml(
                "before-upgrade",
                "nox: consistent: the running machine's memory was saved with its disk",
                "/var/lib/nox/vm/instances/web/disk.before-upgrade.qcow2",
                Some("/var/lib/nox/vm/instances/web/before-upgrade.mem"),
            ),
        );
    }

    #[test]
    fn reads_what_libvirt_returns() {
        let xml = "<domainsnapshot>\n  <name>snap0</name>\n  <description>nox: crash-consistent: x</description>\n  <state>disk-snapshot</state>\n  <creationTime>1795711486</creationTime>\n  <memory snapshot='no'/>\n  <disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/><source file='/x'/></disk></disks>\n  <domain type='qemu'><name>web</name></domain>\n</domainsnapshot>";
        let d = read(xml).unwrap();
        assert_eq!(d.name, "snap0");
        assert_eq!(d.state, "disk-snapshot");
        assert_eq!(d.creation_time, 1795711486);
        assert_eq!(d.memory.unwrap().snapshot, "no");
    }
}
