//! One SO_REUSEPORT listener per queue, all on the same address.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::transport::StartError;

/// Binds `server.queues` listeners to `server.listen`. With port 0 the first listener
/// picks the port and the others join it.
pub(super) fn bind_all(cfg: &Config) -> Result<Vec<TcpListener>, StartError> {
    let mut addr = cfg.server.listen;
    let mut out = Vec::with_capacity(cfg.server.queues);
    for _ in 0..cfg.server.queues {
        let l = bind_one(addr, cfg.kernel.listen_backlog).map_err(|source| StartError::Listen { addr, source })?;
        if addr.port() == 0 {
            addr = l.local_addr().map_err(|source| StartError::Listen { addr, source })?;
        }
        out.push(l);
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]:PORT` is dual stack whatever net.ipv6.bindv6only says: IPv4 clients
        // arrive as IPv4-mapped addresses.
        s.set_only_v6(false)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}
