//! libvirt's QEMU save image, as far as a template clone needs it: the header, the domain XML
//! it carries, and a copy of the image with another XML in its place.
//!
//! Why nox writes this format at all: libvirt restores a save image only into a domain whose
//! UUID (and MAC, and every device) matches the XML saved in it, so
//! `virDomainRestoreFlags(dxml)` cannot give a clone its own UUID. What it does accept is an
//! image whose own XML says the new UUID. So each clone restores from its own short-lived copy
//! of the template's image, whose XML nox rewrote; the copy is deleted once QEMU has read it.
//!
//! The layout (libvirt's `virQEMUSaveHeader`, version 2, unchanged since 2011): 16 bytes of
//! magic, then little-endian u32s `version`, `data_len`, `was_running`, `compressed`,
//! `cookie_offset` and 14 unused, then `data_len` bytes holding the XML, a NUL, the cookie
//! (the CPU definition QEMU was started with) and zero padding libvirt leaves so the XML can
//! grow, then QEMU's migration stream. Anything else (another magic or version, a compressed
//! stream) is refused, and the caller boots cold instead.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

const MAGIC: &[u8; 16] = b"LibvirtQemudSave";
const VERSION: u32 = 2;
/// The header before the data: magic, 5 fields, 14 unused.
const HEADER_LEN: usize = 16 + 4 * 19;

#[derive(Debug, thiserror::Error)]
pub enum SaveImageError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a save image nox can read: {0}")]
    Format(String),
}

/// A parsed header and the data block after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveImage {
    header: [u8; HEADER_LEN],
    data_len: u32,
    pub xml: String,
    /// The cookie, without the padding after it.
    cookie: Vec<u8>,
}

fn u32_at(b: &[u8], field: usize) -> u32 {
    let at = 16 + 4 * field;
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl SaveImage {
    /// Reads the header and XML of the image at `path`.
    pub fn read(path: &Path) -> Result<SaveImage, SaveImageError> {
        let mut f = File::open(path)?;
        let mut header = [0u8; HEADER_LEN];
        f.read_exact(&mut header)?;
        let data_len = Self::check_header(&header)?;
        let mut data = vec![0u8; data_len as usize];
        f.read_exact(&mut data)?;
        Self::parse(header, data)
    }

    fn check_header(header: &[u8; HEADER_LEN]) -> Result<u32, SaveImageError> {
        if &header[..16] != MAGIC {
            return Err(SaveImageError::Format(
                "bad magic (a partial or foreign file)".into(),
            ));
        }
        let version = u32_at(header, 0);
        if version != VERSION {
            return Err(SaveImageError::Format(format!(
                "version {version}, nox reads {VERSION}"
            )));
        }
        if u32_at(header, 3) != 0 {
            return Err(SaveImageError::Format("its stream is compressed".into()));
        }
        let data_len = u32_at(header, 1);
        if data_len > 16 << 20 {
            return Err(SaveImageError::Format(format!("{data_len} bytes of XML")));
        }
        Ok(data_len)
    }

    fn parse(header: [u8; HEADER_LEN], data: Vec<u8>) -> Result<SaveImage, SaveImageError> {
        let data_len = data.len() as u32;
        let cookie_offset = u32_at(&header, 4) as usize;
        let xml_end = data
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| SaveImageError::Format("its XML has no end".into()))?;
        let xml = std::str::from_utf8(&data[..xml_end])
            .map_err(|_| SaveImageError::Format("its XML is not UTF-8".into()))?
            .to_string();
        let cookie = if cookie_offset == 0 {
            Vec::new()
        } else {
            if cookie_offset != xml_end + 1 || cookie_offset > data.len() {
                return Err(SaveImageError::Format("its cookie is misplaced".into()));
            }
            let rest = &data[cookie_offset..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            rest[..end].to_vec()
        };
        Ok(SaveImage {
            header,
            data_len,
            xml,
            cookie,
        })
    }

    /// The data block with `xml` in place of the saved XML, padded to the same length so the
    /// migration stream after it stays where it is. `None` when it does not fit.
    fn data_with(&self, xml: &str) -> Option<([u8; HEADER_LEN], Vec<u8>)> {
        let mut data = Vec::with_capacity(self.data_len as usize);
        data.extend_from_slice(xml.as_bytes());
        data.push(0);
        let cookie_offset = if self.cookie.is_empty() {
            0
        } else {
            let at = data.len() as u32;
            data.extend_from_slice(&self.cookie);
            data.push(0);
            at
        };
        if data.len() > self.data_len as usize {
            return None;
        }
        data.resize(self.data_len as usize, 0);
        let mut header = self.header;
        header[32..36].copy_from_slice(&cookie_offset.to_le_bytes());
        Some((header, data))
    }

    /// Writes a copy of the image at `from` (which `self` was read from) to `to`, carrying
    /// `xml`. The stream is copied in the kernel (`copy_file_range`) from the page cache.
    pub fn copy_with_xml(&self, from: &Path, to: &Path, xml: &str) -> Result<(), SaveImageError> {
        let (header, data) = self.data_with(xml).ok_or_else(|| {
            SaveImageError::Format(format!(
                "the new XML ({} bytes) does not fit its {} bytes",
                xml.len(),
                self.data_len
            ))
        })?;
        let mut src = File::open(from)?;
        src.seek(SeekFrom::Start((HEADER_LEN + data.len()) as u64))?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)?;
        dst.write_all(&header)?;
        dst.write_all(&data)?;
        std::io::copy(&mut src, &mut dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(xml: &str, cookie: &str, pad: usize, stream: &[u8]) -> Vec<u8> {
        let mut data = xml.as_bytes().to_vec();
        data.push(0);
        let cookie_offset = data.len() as u32;
        data.extend_from_slice(cookie.as_bytes());
        data.push(0);
        data.resize(data.len() + pad, 0);
        let mut out = MAGIC.to_vec();
        for v in [VERSION, data.len() as u32, 1, 0, cookie_offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&data);
        out.extend_from_slice(stream);
        out
    }

    #[test]
    fn a_copy_carries_the_new_xml_the_cookie_and_the_stream_at_the_same_offset() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("t.sav");
        let stream = b"QEVM\0\0\0\x03 the migration stream";
        std::fs::write(
            &from,
            image("<domain>old</domain>", "<cookie/>", 64, stream),
        )
        .unwrap();
        let img = SaveImage::read(&from).unwrap();
        assert_eq!(img.xml, "<domain>old</domain>");
        let to = dir.path().join("c.sav");
        img.copy_with_xml(&from, &to, "<domain>a longer new one</domain>")
            .unwrap();
        let copy = SaveImage::read(&to).unwrap();
        assert_eq!(copy.xml, "<domain>a longer new one</domain>");
        assert_eq!(copy.cookie, b"<cookie/>");
        let (a, b) = (std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        assert_eq!(a.len(), b.len());
        assert!(b.ends_with(stream));
        // A copy never overwrites: a leftover of a killed create is an error, not reused.
        assert!(img.copy_with_xml(&from, &to, "<x/>").is_err());
    }

    #[test]
    fn an_xml_larger_than_the_padding_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("t.sav");
        std::fs::write(&from, image("<d/>", "<c/>", 4, b"QEVM")).unwrap();
        let img = SaveImage::read(&from).unwrap();
        let err = img
            .copy_with_xml(&from, &dir.path().join("c.sav"), &"x".repeat(100))
            .unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn foreign_partial_or_compressed_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.sav");
        let mut bytes = image("<d/>", "<c/>", 8, b"");
        bytes[..16].copy_from_slice(b"LibvirtQemudPart");
        std::fs::write(&p, &bytes).unwrap();
        assert!(SaveImage::read(&p)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bytes = image("<d/>", "<c/>", 8, b"");
        bytes[16..20].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert!(SaveImage::read(&p)
            .unwrap_err()
            .to_string()
            .contains("version 3"));
        let mut bytes = image("<d/>", "<c/>", 8, b"");
        bytes[28..32].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert!(SaveImage::read(&p)
            .unwrap_err()
            .to_string()
            .contains("compressed"));
        std::fs::write(&p, b"short").unwrap();
        assert!(SaveImage::read(&p).is_err());
    }
}
