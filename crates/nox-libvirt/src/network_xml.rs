//! libvirt network XML, from typed structs and pinned by a golden file: nox defines libvirt's
//! stock `default` NAT network where it is missing, exactly as Debian's
//! libvirt-daemon-config-network does.

use serde::Serialize;

/// A NAT network with a DHCP range: everything nox's `default` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNetwork {
    pub name: String,
    pub bridge: String,
    pub address: String,
    pub netmask: String,
    pub dhcp_start: String,
    pub dhcp_end: String,
}

impl NatNetwork {
    /// libvirt's stock `default`: virbr0, 192.168.122.0/24.
    pub fn libvirt_default() -> NatNetwork {
        NatNetwork {
            name: "default".into(),
            bridge: "virbr0".into(),
            address: "192.168.122.1".into(),
            netmask: "255.255.255.0".into(),
            dhcp_start: "192.168.122.2".into(),
            dhcp_end: "192.168.122.254".into(),
        }
    }

    pub fn to_xml(&self) -> String {
        let net = xml::Network {
            name: &self.name,
            forward: xml::Forward { mode: "nat" },
            bridge: xml::Bridge {
                name: &self.bridge,
                stp: "on",
                delay: 0,
            },
            ip: xml::Ip {
                address: &self.address,
                netmask: &self.netmask,
                dhcp: xml::Dhcp {
                    range: xml::Range {
                        start: &self.dhcp_start,
                        end: &self.dhcp_end,
                    },
                },
            },
        };
        let mut out = String::new();
        let mut ser = quick_xml::se::Serializer::new(&mut out);
        ser.indent(' ', 2);
        // Plain strings and numbers only: serializing cannot fail.
        let _ = net.serialize(ser);
        out.push('\n');
        out
    }
}

mod xml {
    //! libvirt's network schema, as much as nox uses.
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename = "network")]
    pub struct Network<'a> {
        pub name: &'a str,
        pub forward: Forward,
        pub bridge: Bridge<'a>,
        pub ip: Ip<'a>,
    }

    #[derive(Serialize)]
    pub struct Forward {
        #[serde(rename = "@mode")]
        pub mode: &'static str,
    }

    #[derive(Serialize)]
    pub struct Bridge<'a> {
        #[serde(rename = "@name")]
        pub name: &'a str,
        #[serde(rename = "@stp")]
        pub stp: &'static str,
        #[serde(rename = "@delay")]
        pub delay: u32,
    }

    #[derive(Serialize)]
    pub struct Ip<'a> {
        #[serde(rename = "@address")]
        pub address: &'a str,
        #[serde(rename = "@netmask")]
        pub netmask: &'a str,
        pub dhcp: Dhcp<'a>,
    }

    #[derive(Serialize)]
    pub struct Dhcp<'a> {
        pub range: Range<'a>,
    }

    #[derive(Serialize)]
    pub struct Range<'a> {
        #[serde(rename = "@start")]
        pub start: &'a str,
        #[serde(rename = "@end")]
        pub end: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_default_network() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        nox_core::golden::assert_golden(
            &dir,
            "network-default.xml",
            &NatNetwork::libvirt_default().to_xml(),
        );
    }
}
