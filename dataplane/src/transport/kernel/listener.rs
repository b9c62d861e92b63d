//! One SO_REUSEPORT listener per queue, all on the same address, which no other
//! process may already serve.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::transport::StartError;

/// Binds `server.queues` listeners to `server.listen`. With port 0 the first listener
/// picks the port and the others join it.
pub(super) fn bind_all(cfg: &Config) -> Result<Vec<TcpListener>, StartError> {
    let mut addr = cfg.server.listen;
    if addr.port() != 0 {
        ensure_unserved(addr)?;
    }
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

/// Fails if a socket already listens on `addr`. SO_REUSEPORT would let our listeners
/// join another process's group (any process of the same user may), and the kernel
/// would then split the connections between the two servers without a word. A probe
/// bound without SO_REUSEPORT cannot share the port with a listener, so it is refused
/// exactly when someone serves it. (Two appliances started in the same instant could
/// both pass the probe before either binds; the window is the time between two binds.)
fn ensure_unserved(addr: SocketAddr) -> Result<(), StartError> {
    let probe = || -> std::io::Result<()> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // SO_REUSEADDR: a connection of an earlier run lingering in TIME-WAIT is no owner.
        s.set_reuse_address(true)?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            s.set_only_v6(false)?;
        }
        s.bind(&addr.into())
    };
    match probe() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(StartError::AddressServed { addr }),
        Err(source) => Err(StartError::Listen { addr, source }),
    }
}
