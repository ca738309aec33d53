//! The domain XML a clone's save image carries: the template's saved XML, with what makes the
//! clone itself put in place. Everything else (devices, their PCI addresses, the CPU model) must
//! stay byte for byte what QEMU saved, so this edits a few values with an XML reader and writer
//! and never renders the domain anew.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// What differs between a template and a clone in the saved XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneEdits {
    pub name: String,
    pub uuid: String,
    /// The VM generation ID; its change makes the guest kernel reseed its random pool.
    pub genid: String,
    pub mac: String,
    /// nox's record (JSON) for `<metadata>`.
    pub metadata_json: String,
    /// Old file path to new: the disk overlay, the seed, the console log.
    pub files: BTreeMap<String, String>,
    /// The passt SSH port forward (`<range start=PORT to='22'/>`) for `user` networks.
    pub ssh_port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
#[error("rewriting the template's saved XML: {0}")]
pub struct CloneXmlError(String);

/// `xml` with `edits` applied. Fails if the XML lacks a name, UUID, generation ID or MAC to
/// replace: a template saved without one cannot give a clone its own.
pub fn rewrite(xml: &str, edits: &CloneEdits) -> Result<String, CloneXmlError> {
    let e = |x: &dyn std::fmt::Display| CloneXmlError(x.to_string());
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::new());
    // The element path from the root, by local name.
    let mut path: Vec<String> = Vec::new();
    let mut replaced: Vec<&str> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|x| e(&x))?;
        match event {
            Event::Eof => break,
            Event::Start(start) => {
                let local = local_name(&start);
                let start =
                    edit_attributes(&start, &path, edits, &mut replaced).map_err(|x| e(&x))?;
                writer.write_event(Event::Start(start)).map_err(|x| e(&x))?;
                path.push(local);
            }
            Event::Empty(start) => {
                let start =
                    edit_attributes(&start, &path, edits, &mut replaced).map_err(|x| e(&x))?;
                writer.write_event(Event::Empty(start)).map_err(|x| e(&x))?;
            }
            Event::End(end) => {
                path.pop();
                writer.write_event(Event::End(end)).map_err(|x| e(&x))?;
            }
            Event::Text(text) => {
                let new = match path_str(&path).as_str() {
                    "domain/name" => Some(("name", edits.name.as_str())),
                    "domain/uuid" => Some(("uuid", edits.uuid.as_str())),
                    "domain/genid" => Some(("genid", edits.genid.as_str())),
                    "domain/metadata/instance" => Some(("metadata", edits.metadata_json.as_str())),
                    _ => None,
                };
                match new {
                    Some((what, value)) => {
                        replaced.push(what);
                        writer
                            .write_event(Event::Text(BytesText::new(value)))
                            .map_err(|x| e(&x))?;
                    }
                    None => writer.write_event(Event::Text(text)).map_err(|x| e(&x))?,
                }
            }
            other => writer.write_event(other).map_err(|x| e(&x))?,
        }
    }
    for what in ["name", "uuid", "genid", "mac", "metadata"] {
        if !replaced.contains(&what) {
            return Err(CloneXmlError(format!("it has no {what} to replace")));
        }
    }
    if edits.ssh_port.is_some() && !replaced.contains(&"port") {
        return Err(CloneXmlError("it has no SSH port forward to move".into()));
    }
    String::from_utf8(writer.into_inner()).map_err(|x| e(&x))
}

fn local_name(start: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(start.local_name().as_ref()).into_owned()
}

fn path_str(path: &[String]) -> String {
    path.join("/")
}

fn edit_attributes<'a>(
    start: &BytesStart<'a>,
    parents: &[String],
    edits: &'a CloneEdits,
    replaced: &mut Vec<&'static str>,
) -> Result<BytesStart<'static>, quick_xml::Error> {
    let local = local_name(start);
    let parent = parents.last().map(String::as_str).unwrap_or("");
    let mut out = BytesStart::new(String::from_utf8_lossy(start.name().as_ref()).into_owned());
    for attr in start.attributes() {
        let attr = attr.map_err(quick_xml::Error::from)?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr.unescape_value()?.into_owned();
        let new = match (local.as_str(), parent, key.as_str()) {
            ("mac", "interface", "address") => {
                replaced.push("mac");
                edits.mac.clone()
            }
            ("range", "portForward", "start") if edits.ssh_port.is_some() => {
                replaced.push("port");
                edits.ssh_port.unwrap_or_default().to_string()
            }
            (_, _, "file") => edits.files.get(&value).cloned().unwrap_or(value),
            _ => value,
        };
        out.push_attribute((key.as_str(), new.as_str()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libvirt 9.0 saved for a running nox VM on this project's test host.
    const SAVED: &str = include_str!("../golden/clone/saved-template.xml");

    fn edits() -> CloneEdits {
        let t = "/var/lib/nox/vm/templates/0123456789abcdef";
        let c = "/var/lib/nox/vm/instances/web";
        CloneEdits {
            name: "web".into(),
            uuid: "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".into(),
            genid: "0b6c1c4e-7f52-4c3f-9a9e-2d6f2c1b5a48".into(),
            mac: "52:54:00:ab:cd:ef".into(),
            metadata_json: r#"{"spec":{"name":"web"},"note":"<&>"}"#.into(),
            files: [
                (format!("{t}/disk.qcow2"), format!("{c}/disk.qcow2")),
                (format!("{t}/seed.img"), format!("{c}/seed.img")),
                (format!("{t}/console.log"), format!("{c}/console.log")),
            ]
            .into_iter()
            .collect(),
            ssh_port: None,
        }
    }

    #[test]
    fn golden_clone_of_a_saved_template() {
        let out = rewrite(SAVED, &edits()).unwrap();
        nox_core::golden::assert_golden(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/clone"),
            "clone-web.xml",
            &out,
        );
        assert!(!out.contains("0123456789abcdef"), "a template path is left");
        assert!(
            !out.contains("nox.template."),
            "the template's name is left"
        );
        assert_eq!(
            crate::domain::record_from_metadata(&out[out.find("<nox:instance").unwrap()..])
                .as_deref(),
            Some(edits().metadata_json.as_str())
        );
    }

    #[test]
    fn a_saved_xml_without_a_genid_cannot_make_a_clone() {
        let without = SAVED.replace("<genid>", "<x>").replace("</genid>", "</x>");
        let err = rewrite(&without, &edits()).unwrap_err();
        assert!(err.to_string().contains("no genid"), "{err}");
    }

    #[test]
    fn a_user_network_clone_moves_its_ssh_port_and_needs_one() {
        let mut ed = edits();
        ed.ssh_port = Some(2299);
        assert!(rewrite(SAVED, &ed)
            .unwrap_err()
            .to_string()
            .contains("SSH port"));
        let passt = SAVED.replace(
            "<source network='default'/>",
            "<source network='default'/><portForward proto='tcp' address='127.0.0.1'><range start='2201' to='22'/></portForward>",
        );
        let out = rewrite(&passt, &ed).unwrap();
        assert!(out.contains(r#"<range start="2299" to="22"/>"#), "{out}");
    }
}
