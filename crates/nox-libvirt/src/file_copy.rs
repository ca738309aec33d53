//! `nox cp` for VMs: file content travels through the guest agent's file calls
//! (guest-file-open/read/write/close, base64 in JSON), a piece at a time, so a large file is
//! never held whole in memory and no network path to the guest is needed.

use std::io::{Read, Write};

use nox_core::{Error, InstanceName};
use virt::domain::Domain;

use crate::agent::{AgentError, GuestAgent};
use crate::list::find;
use crate::LibvirtBackend;

/// Bytes per agent call, chosen by measurement on a TCG guest (Debian 12's qemu-ga 7.2;
/// docs/benchmarks.md). Each call is a round trip through libvirtd and the guest's
/// virtio-serial port, but what costs is the guest lexing the JSON, byte by byte:
/// - writes: 4 MiB at 32 KiB pieces took 3.25 s (25 ms a call), at 64 KiB 2.91 s, at 128 KiB
///   2.77 s: about 0.7 ms per KiB whatever the piece, so bigger pieces gain little. From
///   256 KiB up qemu-ga never answered (libvirt's 120 s timeout, then a failed sync), so writes
///   use 64 KiB, well below that;
/// - reads: 10 MiB took 5.1 s at 256 KiB, 3.5 s at 1 MiB, 6.2 s at 3 MiB. libvirt's RPC
///   carries a reply as one string of at most 4 MiB, which base64 fills at 3 MiB.
pub const WRITE_PIECE: usize = 64 << 10;
pub const READ_PIECE: usize = 1 << 20;
/// How long one piece may take, in seconds: a busy emulated guest can be slow.
const PIECE_TIMEOUT_SECS: i32 = 120;

fn running_agent<'d>(dom: &'d Domain, name: &InstanceName) -> Result<GuestAgent<'d>, Error> {
    if !dom.is_active().unwrap_or(false) {
        return Err(Error::not_running(name.as_str()));
    }
    let agent = GuestAgent::new(dom);
    if !agent.ping() {
        return Err(Error::failed(
            format!("the guest agent in {name} does not answer"),
            format!("the guest may still be booting: `nox start --wait {name}`, or check `nox console {name}`"),
        ));
    }
    Ok(agent)
}

fn open_failed(name: &InstanceName, path: &str, e: AgentError) -> Error {
    let why = match &e {
        AgentError::Libvirt(v) => v.message().to_string(),
        other => other.to_string(),
    };
    Error::failed(
        format!("cannot open {path} in {name}: {why}"),
        format!("check the path with `nox exec {name} -- ls -ld {path}`"),
    )
}

pub fn read(
    b: &LibvirtBackend,
    name: &InstanceName,
    path: &str,
    sink: &mut dyn Write,
) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, _) = find(&conn, name)?;
    let agent = running_agent(&dom, name)?;
    let handle = agent
        .file_open_mode(path, "r")
        .map_err(|e| open_failed(name, path, e))?;
    let copied = (|| -> Result<(), Error> {
        loop {
            let (bytes, eof) = agent.file_read_slow(handle, READ_PIECE, PIECE_TIMEOUT_SECS)?;
            sink.write_all(&bytes)
                .map_err(|e| Error::io(format!("writing what {name}:{path} holds"), e))?;
            if eof || bytes.is_empty() {
                return Ok(());
            }
        }
    })();
    agent.file_close(handle);
    copied
}

pub fn write(
    b: &LibvirtBackend,
    name: &InstanceName,
    path: &str,
    source: &mut dyn Read,
) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, _) = find(&conn, name)?;
    let agent = running_agent(&dom, name)?;
    let handle = agent
        .file_open_mode(path, "w")
        .map_err(|e| open_failed(name, path, e))?;
    let copied = (|| -> Result<(), Error> {
        let mut piece = vec![0u8; WRITE_PIECE];
        loop {
            let n = fill(source, &mut piece)
                .map_err(|e| Error::io(format!("reading what goes to {name}:{path}"), e))?;
            if n == 0 {
                return Ok(());
            }
            agent.file_write(handle, &piece[..n], PIECE_TIMEOUT_SECS)?;
        }
    })();
    match copied {
        Ok(()) => agent.file_close_checked(handle).map_err(Error::from),
        Err(e) => {
            agent.file_close(handle);
            Err(e)
        }
    }
}

/// Reads until `buf` is full or the source ends, so every agent call carries a whole piece.
fn fill(source: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
