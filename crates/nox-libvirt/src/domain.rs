//! libvirt domain XML, rendered from typed structs (serde + quick-xml) and pinned by golden
//! files in `golden/`, so a reviewer sees exactly what a change does to a guest.
//!
//! [`DomainSpec`] is what nox decides; the private `xml` structs mirror libvirt's schema and
//! are the only place that knows element and attribute names.

use serde::Serialize;

/// The XML namespace of nox's record in `<metadata>`.
pub const METADATA_NS: &str = "https://nox.dev/xmlns/instance/1";
/// The prefix libvirt stores that namespace's element under.
pub const METADATA_PREFIX: &str = "nox";

/// libvirt's domain type: hardware virtualization, or QEMU's software emulation (TCG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Qemu,
}

/// How the VM's one NIC is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    /// A libvirt network (`default` is NAT).
    Network { network: String },
    /// An existing host bridge.
    Bridge { bridge: String },
    /// macvtap on a host NIC (`mode="bridge"`): the guest sits on the LAN, the host cannot reach it.
    Macvtap { device: String },
    /// passt user-mode networking; `ssh_port` on 127.0.0.1 forwards to the guest's port 22,
    /// and each of `forwards` (`nox forward`) becomes one more passt port forward.
    User {
        ssh_port: u16,
        forwards: Vec<nox_core::forward::Forward>,
    },
}

/// Everything that decides a nox VM's domain XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub uuid: String,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The VM's qcow2 overlay.
    pub disk: String,
    /// The cloud-init NoCloud seed (a FAT image labelled CIDATA, attached as the CD-ROM).
    pub seed: Option<String>,
    pub mac: String,
    pub nic: Nic,
    /// Where virtlogd keeps the serial console's output.
    pub console_log: String,
    /// nox's record of the instance (JSON), kept in `<metadata>` so nothing can drift from it.
    pub metadata_json: String,
    /// Shared folders (virtiofs). The guest's memory is always shared (memfd), as virtiofsd
    /// needs, so one can be added to a running VM.
    pub shares: Vec<Share>,
    /// The VM generation ID: templates and their clones carry one, so a restored clone's new
    /// value makes the guest reseed its random pool. Cold VMs have none.
    pub genid: Option<String>,
}

/// One host directory exported to the guest over virtiofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub source: String,
    /// What the guest mounts (`mount -t virtiofs TAG DIR`).
    pub tag: String,
    pub readonly: bool,
    /// The virtiofsd libvirt starts for it (libvirt's default search misses /usr/local).
    pub virtiofsd: String,
}

impl Share {
    /// The `<filesystem>` element alone, for attaching to a running domain.
    pub fn to_xml(&self) -> String {
        render(&self.element())
    }

    fn element(&self) -> xml::Filesystem<'_> {
        xml::Filesystem {
            kind: "mount",
            accessmode: "passthrough",
            driver: xml::FsDriver { kind: "virtiofs" },
            binary: xml::FsBinary {
                path: &self.virtiofsd,
            },
            source: xml::FsDir { dir: &self.source },
            target: xml::FsDir { dir: &self.tag },
            readonly: self.readonly.then_some(()),
        }
    }
}

mod xml {
    //! libvirt's schema, as much of it as nox uses. Field names starting with `@` are
    //! attributes, `$text` is element text (quick-xml's serde conventions).

    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename = "domain")]
    pub struct Domain<'a> {
        #[serde(rename = "@type")]
        pub kind: &'a str,
        pub name: &'a str,
        pub uuid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub genid: Option<&'a str>,
        pub metadata: Metadata<'a>,
        pub memory: Sized,
        #[serde(rename = "memoryBacking", skip_serializing_if = "Option::is_none")]
        pub memory_backing: Option<MemoryBacking>,
        pub vcpu: u32,
        pub os: Os,
        pub features: Features,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cpu: Option<Cpu>,
        pub clock: Clock,
        pub on_poweroff: &'a str,
        pub on_reboot: &'a str,
        pub on_crash: &'a str,
        pub devices: Devices<'a>,
    }

    #[derive(Serialize)]
    pub struct Metadata<'a> {
        #[serde(rename = "nox:instance")]
        pub instance: Record<'a>,
    }

    #[derive(Serialize)]
    pub struct Record<'a> {
        #[serde(rename = "@xmlns:nox")]
        pub ns: &'a str,
        #[serde(rename = "$text")]
        pub json: &'a str,
    }

    #[derive(Serialize)]
    pub struct Sized {
        #[serde(rename = "@unit")]
        pub unit: &'static str,
        #[serde(rename = "$text")]
        pub value: u64,
    }

    #[derive(Serialize)]
    pub struct Os {
        #[serde(rename = "type")]
        pub kind: OsType,
        pub boot: Boot,
    }

    #[derive(Serialize)]
    pub struct OsType {
        #[serde(rename = "@arch")]
        pub arch: &'static str,
        #[serde(rename = "@machine")]
        pub machine: &'static str,
        #[serde(rename = "$text")]
        pub value: &'static str,
    }

    #[derive(Serialize)]
    pub struct Boot {
        #[serde(rename = "@dev")]
        pub dev: &'static str,
    }

    #[derive(Serialize)]
    pub struct Features {
        pub acpi: (),
        pub apic: (),
    }

    #[derive(Serialize)]
    pub struct Cpu {
        #[serde(rename = "@mode")]
        pub mode: &'static str,
    }

    #[derive(Serialize)]
    pub struct Clock {
        #[serde(rename = "@offset")]
        pub offset: &'static str,
    }

    /// virtiofsd reads and writes the guest's memory: it must be a shared mapping.
    #[derive(Serialize)]
    pub struct MemoryBacking {
        pub source: TypeAttr,
        pub access: Access,
    }

    #[derive(Serialize)]
    pub struct TypeAttr {
        #[serde(rename = "@type")]
        pub kind: &'static str,
    }

    #[derive(Serialize)]
    pub struct Access {
        #[serde(rename = "@mode")]
        pub mode: &'static str,
    }

    #[derive(Serialize)]
    #[serde(rename = "filesystem")]
    pub struct Filesystem<'a> {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        #[serde(rename = "@accessmode")]
        pub accessmode: &'static str,
        pub driver: FsDriver,
        pub binary: FsBinary<'a>,
        pub source: FsDir<'a>,
        pub target: FsDir<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub readonly: Option<()>,
    }

    #[derive(Serialize)]
    pub struct FsDriver {
        #[serde(rename = "@type")]
        pub kind: &'static str,
    }

    #[derive(Serialize)]
    pub struct FsBinary<'a> {
        #[serde(rename = "@path")]
        pub path: &'a str,
    }

    #[derive(Serialize)]
    pub struct FsDir<'a> {
        #[serde(rename = "@dir")]
        pub dir: &'a str,
    }

    #[derive(Serialize)]
    pub struct Devices<'a> {
        pub disk: Vec<Disk<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub filesystem: Vec<Filesystem<'a>>,
        pub interface: Interface<'a>,
        pub channel: Channel,
        pub serial: Serial<'a>,
        pub console: Console,
        pub rng: Rng,
        pub memballoon: Memballoon,
    }

    #[derive(Serialize)]
    pub struct Disk<'a> {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        #[serde(rename = "@device")]
        pub device: &'static str,
        pub driver: Driver,
        pub source: FileSource<'a>,
        pub target: DiskTarget,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub readonly: Option<()>,
    }

    #[derive(Serialize)]
    pub struct Driver {
        #[serde(rename = "@name")]
        pub name: &'static str,
        #[serde(rename = "@type")]
        pub format: &'static str,
        #[serde(rename = "@discard", skip_serializing_if = "Option::is_none")]
        pub discard: Option<&'static str>,
    }

    #[derive(Serialize)]
    pub struct FileSource<'a> {
        #[serde(rename = "@file")]
        pub file: &'a str,
    }

    #[derive(Serialize)]
    pub struct DiskTarget {
        #[serde(rename = "@dev")]
        pub dev: &'static str,
        #[serde(rename = "@bus")]
        pub bus: &'static str,
    }

    #[derive(Serialize)]
    #[serde(rename = "interface")]
    pub struct Interface<'a> {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        pub mac: Mac<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source: Option<IfaceSource<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub backend: Option<Backend>,
        #[serde(rename = "portForward", skip_serializing_if = "Vec::is_empty")]
        pub port_forward: Vec<PortForward>,
        pub model: Model,
    }

    #[derive(Serialize)]
    pub struct Mac<'a> {
        #[serde(rename = "@address")]
        pub address: &'a str,
    }

    #[derive(Serialize)]
    pub struct IfaceSource<'a> {
        #[serde(rename = "@network", skip_serializing_if = "Option::is_none")]
        pub network: Option<&'a str>,
        #[serde(rename = "@bridge", skip_serializing_if = "Option::is_none")]
        pub bridge: Option<&'a str>,
        #[serde(rename = "@dev", skip_serializing_if = "Option::is_none")]
        pub dev: Option<&'a str>,
        #[serde(rename = "@mode", skip_serializing_if = "Option::is_none")]
        pub mode: Option<&'a str>,
    }

    #[derive(Serialize)]
    pub struct Backend {
        #[serde(rename = "@type")]
        pub kind: &'static str,
    }

    #[derive(Serialize)]
    pub struct PortForward {
        #[serde(rename = "@proto")]
        pub proto: &'static str,
        #[serde(rename = "@address")]
        pub address: String,
        pub range: Range,
    }

    #[derive(Serialize)]
    pub struct Range {
        #[serde(rename = "@start")]
        pub start: u16,
        #[serde(rename = "@to")]
        pub to: u16,
    }

    #[derive(Serialize)]
    pub struct Model {
        #[serde(rename = "@type")]
        pub kind: &'static str,
    }

    #[derive(Serialize)]
    pub struct Channel {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        pub target: ChannelTarget,
    }

    #[derive(Serialize)]
    pub struct ChannelTarget {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        #[serde(rename = "@name")]
        pub name: &'static str,
    }

    #[derive(Serialize)]
    pub struct Serial<'a> {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        pub target: SerialTarget,
        pub log: Log<'a>,
    }

    #[derive(Serialize)]
    pub struct SerialTarget {
        #[serde(rename = "@port")]
        pub port: u32,
    }

    #[derive(Serialize)]
    pub struct Log<'a> {
        #[serde(rename = "@file")]
        pub file: &'a str,
        #[serde(rename = "@append")]
        pub append: &'static str,
    }

    #[derive(Serialize)]
    pub struct Console {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        pub target: ConsoleTarget,
    }

    #[derive(Serialize)]
    pub struct ConsoleTarget {
        #[serde(rename = "@type")]
        pub kind: &'static str,
        #[serde(rename = "@port")]
        pub port: u32,
    }

    #[derive(Serialize)]
    pub struct Rng {
        #[serde(rename = "@model")]
        pub model: &'static str,
        pub backend: RngBackend,
    }

    /// The balloon, for free page reporting: the guest hands pages it frees back to the host,
    /// so an idle guest's memory shrinks and a template's saved state holds only what its
    /// guest uses (QEMU saves a discarded page as a zero page, in a few bytes).
    #[derive(Serialize)]
    pub struct Memballoon {
        #[serde(rename = "@model")]
        pub model: &'static str,
        #[serde(rename = "@freePageReporting")]
        pub free_page_reporting: &'static str,
    }

    #[derive(Serialize)]
    pub struct RngBackend {
        #[serde(rename = "@model")]
        pub model: &'static str,
        #[serde(rename = "$text")]
        pub device: &'static str,
    }
}

impl DomainSpec {
    fn disks(&self) -> Vec<xml::Disk<'_>> {
        let mut disks = vec![xml::Disk {
            kind: "file",
            device: "disk",
            // discard=unmap: blocks the guest frees are returned to the host's filesystem.
            driver: xml::Driver {
                name: "qemu",
                format: "qcow2",
                discard: Some("unmap"),
            },
            source: xml::FileSource { file: &self.disk },
            target: xml::DiskTarget {
                dev: "vda",
                bus: "virtio",
            },
            readonly: None,
        }];
        if let Some(seed) = &self.seed {
            disks.push(xml::Disk {
                kind: "file",
                device: "cdrom",
                driver: xml::Driver {
                    name: "qemu",
                    format: "raw",
                    discard: None,
                },
                source: xml::FileSource { file: seed },
                target: xml::DiskTarget {
                    dev: "sda",
                    bus: "sata",
                },
                readonly: Some(()),
            });
        }
        disks
    }
}

fn interface<'a>(mac: &'a str, nic: &'a Nic) -> xml::Interface<'a> {
    let none = xml::IfaceSource {
        network: None,
        bridge: None,
        dev: None,
        mode: None,
    };
    let (kind, source, backend, port_forward) = match nic {
        Nic::Network { network } => (
            "network",
            Some(xml::IfaceSource {
                network: Some(network),
                ..none
            }),
            None,
            Vec::new(),
        ),
        Nic::Bridge { bridge } => (
            "bridge",
            Some(xml::IfaceSource {
                bridge: Some(bridge),
                ..none
            }),
            None,
            Vec::new(),
        ),
        Nic::Macvtap { device } => (
            "direct",
            Some(xml::IfaceSource {
                dev: Some(device),
                mode: Some("bridge"),
                ..none
            }),
            None,
            Vec::new(),
        ),
        // SSH is bound to 127.0.0.1 only: never exposed beyond this host. The user's own
        // forwards follow, each on the address it was given.
        Nic::User { ssh_port, forwards } => (
            "user",
            None,
            Some(xml::Backend { kind: "passt" }),
            std::iter::once(xml::PortForward {
                proto: "tcp",
                address: "127.0.0.1".into(),
                range: xml::Range {
                    start: *ssh_port,
                    to: 22,
                },
            })
            .chain(forwards.iter().map(|f| xml::PortForward {
                proto: f.proto.as_str(),
                address: f.address.to_string(),
                range: xml::Range {
                    start: f.host_port,
                    to: f.guest_port,
                },
            }))
            .collect(),
        ),
    };
    xml::Interface {
        kind,
        mac: xml::Mac { address: mac },
        source,
        backend,
        port_forward,
        model: xml::Model { kind: "virtio" },
    }
}

/// The `<interface>` element alone, for `virDomainUpdateDeviceFlags` (`nox forward`).
pub fn interface_xml(mac: &str, nic: &Nic) -> String {
    render(&interface(mac, nic))
}

impl DomainSpec {
    /// The domain XML libvirt gets.
    pub fn to_xml(&self) -> String {
        let disks = self.disks();
        let domain = xml::Domain {
            kind: match self.accel {
                Accel::Kvm => "kvm",
                Accel::Qemu => "qemu",
            },
            name: &self.name,
            uuid: &self.uuid,
            genid: self.genid.as_deref(),
            metadata: xml::Metadata {
                instance: xml::Record {
                    ns: METADATA_NS,
                    json: &self.metadata_json,
                },
            },
            memory: xml::Sized {
                unit: "MiB",
                value: self.memory_mib,
            },
            // Always shared, so `nox mount add` can hot-plug a share into any running VM.
            memory_backing: Some(xml::MemoryBacking {
                source: xml::TypeAttr { kind: "memfd" },
                access: xml::Access { mode: "shared" },
            }),
            vcpu: self.vcpus,
            os: xml::Os {
                kind: xml::OsType {
                    arch: "x86_64",
                    machine: "q35",
                    value: "hvm",
                },
                boot: xml::Boot { dev: "hd" },
            },
            features: xml::Features { acpi: (), apic: () },
            // Under KVM, give the guest the host's CPU. Under TCG, QEMU's default model is
            // the fastest to emulate.
            cpu: match self.accel {
                Accel::Kvm => Some(xml::Cpu {
                    mode: "host-passthrough",
                }),
                Accel::Qemu => None,
            },
            clock: xml::Clock { offset: "utc" },
            on_poweroff: "destroy",
            on_reboot: "restart",
            on_crash: "destroy",
            devices: xml::Devices {
                disk: disks,
                filesystem: self.shares.iter().map(Share::element).collect(),
                interface: interface(&self.mac, &self.nic),
                channel: xml::Channel {
                    kind: "unix",
                    target: xml::ChannelTarget {
                        kind: "virtio",
                        name: "org.qemu.guest_agent.0",
                    },
                },
                serial: xml::Serial {
                    kind: "pty",
                    target: xml::SerialTarget { port: 0 },
                    log: xml::Log {
                        file: &self.console_log,
                        append: "off",
                    },
                },
                console: xml::Console {
                    kind: "pty",
                    target: xml::ConsoleTarget {
                        kind: "serial",
                        port: 0,
                    },
                },
                rng: xml::Rng {
                    model: "virtio",
                    backend: xml::RngBackend {
                        model: "random",
                        device: "/dev/urandom",
                    },
                },
                memballoon: xml::Memballoon {
                    model: "virtio",
                    free_page_reporting: "on",
                },
            },
        };
        render(&domain)
    }
}

fn render<T: Serialize>(value: &T) -> String {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    // Strings and numbers only: serializing cannot fail.
    let _ = value.serialize(ser);
    out.push('\n');
    out
}

/// Extracts nox's record (JSON text) from a domain's `<metadata>` element as libvirt returns
/// it for our namespace: `<instance xmlns="…">JSON</instance>` (XML-escaped). Read with an XML
/// reader, so comments, CDATA or a changed prefix cannot confuse it.
pub fn record_from_metadata(xml: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return Some(text);
                }
            }
            Event::Text(t) if depth == 1 => text.push_str(&t.unescape().ok()?),
            Event::CData(c) if depth == 1 => text.push_str(std::str::from_utf8(&c).ok()?),
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nic: Nic, accel: Accel) -> DomainSpec {
        DomainSpec {
            name: "web".into(),
            uuid: "6b1c1a0e-6f5e-4c1b-9d0f-3a7e2b9c4d11".into(),
            accel,
            vcpus: 2,
            memory_mib: 2048,
            disk: "/var/lib/nox/vm/web/disk.qcow2".into(),
            seed: Some("/var/lib/nox/vm/web/seed.img".into()),
            mac: "52:54:00:12:34:56".into(),
            nic,
            console_log: "/var/log/libvirt/qemu/web-console.log".into(),
            metadata_json: r#"{"name":"web","note":"<&>"}"#.into(),
            shares: Vec::new(),
            genid: None,
        }
    }

    /// Compares with `golden/NAME`; `NOX_UPDATE_GOLDEN=1` rewrites the file instead.
    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        nox_core::golden::assert_golden(&dir, name, actual);
    }

    #[test]
    fn golden_domains_for_each_network_mode() {
        let cases = [
            (
                "domain-user.xml",
                Nic::User {
                    ssh_port: 40022,
                    forwards: Vec::new(),
                },
                Accel::Qemu,
            ),
            (
                "domain-network.xml",
                Nic::Network {
                    network: "default".into(),
                },
                Accel::Kvm,
            ),
            (
                "domain-bridge.xml",
                Nic::Bridge {
                    bridge: "br0".into(),
                },
                Accel::Kvm,
            ),
            (
                "domain-macvtap.xml",
                Nic::Macvtap {
                    device: "eth0".into(),
                },
                Accel::Kvm,
            ),
        ];
        for (file, nic, accel) in cases {
            golden(file, &spec(nic, accel).to_xml());
        }
        // Shared folders: virtiofs, with the guest's memory shared with virtiofsd.
        let mut shared = spec(
            Nic::User {
                ssh_port: 40022,
                forwards: Vec::new(),
            },
            Accel::Qemu,
        );
        shared.shares = vec![
            Share {
                source: "/srv/code".into(),
                tag: "nox-cd089f850ca95ff1".into(),
                readonly: false,
                virtiofsd: "/usr/local/bin/virtiofsd".into(),
            },
            Share {
                source: "/srv/data".into(),
                tag: "nox-98c9bb081ee5e44c".into(),
                readonly: true,
                virtiofsd: "/usr/local/bin/virtiofsd".into(),
            },
        ];
        golden("domain-user-shares.xml", &shared.to_xml());
    }

    #[test]
    fn golden_passt_interface_with_forwards() {
        use nox_core::forward::Forward;
        let nic = Nic::User {
            ssh_port: 40022,
            forwards: vec![
                Forward::parse("8080:80", std::net::Ipv4Addr::LOCALHOST).unwrap(),
                Forward::parse("5353:53/udp", std::net::Ipv4Addr::UNSPECIFIED).unwrap(),
            ],
        };
        golden(
            "interface-user-forwards.xml",
            &interface_xml("52:54:00:12:34:56", &nic),
        );
    }

    #[test]
    fn metadata_record_round_trips_through_escaping() {
        let xml = spec(
            Nic::User {
                ssh_port: 1,
                forwards: Vec::new(),
            },
            Accel::Qemu,
        )
        .to_xml();
        let start = xml.find("<nox:instance").unwrap();
        let end = xml.find("</nox:instance>").unwrap() + "</nox:instance>".len();
        assert_eq!(
            record_from_metadata(&xml[start..end]).unwrap(),
            r#"{"name":"web","note":"<&>"}"#
        );
        // As libvirt hands it back: its own prefix and namespace, text split by a comment.
        assert_eq!(
            record_from_metadata(
                r#"<instance xmlns="https://nox.dev/xmlns/instance/1">{"a":<!-- x -->"&lt;"}</instance>"#
            )
            .unwrap(),
            r#"{"a":"<"}"#
        );
        assert_eq!(record_from_metadata("<instance>unclosed"), None);
        assert_eq!(record_from_metadata("not xml"), None);
    }
}
