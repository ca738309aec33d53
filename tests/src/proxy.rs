//! A TCP proxy on 127.0.0.1 that cuts connections, for the S3 fault tests: it forwards to
//! one upstream address (moto, also on 127.0.0.1) and, once a connection has carried more
//! than `after` bytes towards the server, drops it in both directions, as a server or a
//! middlebox that gives up mid-upload does. It counts the connections it cut.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Which connections are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The first connection that goes past the limit; every later one is left alone.
    Once,
    /// Every connection that goes past the limit.
    Always,
}

#[derive(Debug)]
pub struct CuttingProxy {
    pub addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Listens on a free 127.0.0.1 port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, cut: Cut, after: u64) -> CuttingProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to 127.0.0.1 only"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let armed = cut == Cut::Always || c.load(Ordering::SeqCst) == 0;
                let cuts = c.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Server to client: as is.
                std::thread::spawn(move || pump(s2, c2, u64::MAX, || {}));
                // Client to server: cut past `after` bytes, when armed.
                let limit = if armed { after } else { u64::MAX };
                std::thread::spawn(move || {
                    pump(client, server, limit, || {
                        cuts.fetch_add(1, Ordering::SeqCst);
                    })
                });
            }
        });
        CuttingProxy { addr, cuts, stop }
    }

    /// `http://127.0.0.1:PORT`, for `[s3] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it has cut.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` until either end closes; past `limit` bytes, shuts both sockets
/// down (each end then sees its connection dropped) and calls `cut`.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: u64, cut: impl FnOnce()) {
    let mut buf = [0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if sent + n as u64 > limit {
            let _ = to.write_all(&buf[..(limit - sent) as usize]);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            cut();
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
}
