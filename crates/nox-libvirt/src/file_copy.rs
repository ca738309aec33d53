//! `nox cp` for VMs: file content travels through the guest agent's file calls
//! (guest-file-open/read/write/close, base64 in JSON), a piece at a time, so a large file is
//! never held whole in memory and no network path to the guest is needed.

use std::io::{Read, Write};

use nox_core::{Error, InstanceName};
use virt::domain::Domain;

use crate::agent::{AgentError, GuestAgent};
use crate::list::find;
use crate::LibvirtBackend;

/// Bytes per agent call. Measured on a TCG guest (docs/benchmarks.md): each call is a round
/// trip through libvirtd and the guest's virtio-serial port, so bigger pieces mean fewer
/// trips. libvirt's RPC carries a reply as one string of at most 4 MiB (REMOTE_STRING_MAX),
/// and base64 grows data by a third, so a read of 3 MiB is the largest that fits.
pub const PIECE: usize = 3 << 20;
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
            let (bytes, eof) = agent.file_read_slow(handle, PIECE, PIECE_TIMEOUT_SECS)?;
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
        let mut piece = vec![0u8; PIECE];
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
