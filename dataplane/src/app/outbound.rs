//! Outbound TCP connections from a core, as async handlers and app-level clients see
//! them: [`Cx::connect`](super::Cx::connect) gives an [`Upstream`] to write to and read
//! from with futures.
//!
//! The connection's state ([`ClientConn`]) is shared between the handler's [`Upstream`]
//! and the transport that carries it (a kernel socket in the core's epoll, or our TCP
//! engine's active open): the handler's side queues bytes and registers its waker, the
//! transport moves bytes and reports progress. Requests to connect, and connections with
//! new bytes to send, are listed in [`OutboundState`] for the transport to take each turn.
//! Nothing crosses a thread.

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::exec::{timeout, CoreShared};

/// Bytes an upstream connection buffers in each direction before the writer waits (or
/// the transport stops reading).
pub const UPSTREAM_BUFFER_BYTES: usize = 256 << 10;

/// Why an outbound connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The peer refused the connection (RST to our SYN, ECONNREFUSED).
    #[error("connection refused")]
    Refused,
    /// The peer reset the connection.
    #[error("connection reset")]
    Reset,
    /// Not established, or no progress, within the time allowed.
    #[error("timed out")]
    TimedOut,
    /// Used after the connection was closed.
    #[error("connection closed")]
    Closed,
    /// The transport cannot open connections to this address (no route, wrong family,
    /// too many connections).
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// Another socket error, with its cause.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where an outbound connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPhase {
    /// Waiting for the transport to take it.
    Requested,
    /// SYN sent / connect in progress.
    Connecting,
    /// Established.
    Open,
    /// Ended; the reason if it failed.
    Ended(Option<EndReason>),
}

/// Why a connection ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Refused.
    Refused,
    /// Reset.
    Reset,
    /// Timed out (by the transport, or the connect deadline).
    TimedOut,
    /// Unreachable or failed locally.
    Failed,
}

impl EndReason {
    fn error(self) -> UpstreamError {
        match self {
            EndReason::Refused => UpstreamError::Refused,
            EndReason::Reset => UpstreamError::Reset,
            EndReason::TimedOut => UpstreamError::TimedOut,
            EndReason::Failed => UpstreamError::Unreachable("the transport could not open it".into()),
        }
    }
}

/// One outbound connection's shared state.
#[derive(Debug)]
pub struct ClientState {
    /// Where to.
    pub addr: SocketAddr,
    /// Its phase.
    pub phase: ClientPhase,
    /// Bytes received, not yet read by the handler.
    pub rx: Vec<u8>,
    /// Bytes queued by the handler, not yet acknowledged (kernel: not yet written).
    pub tx: Vec<u8>,
    /// The peer finished sending.
    pub eof: bool,
    /// The handler is done with it: close once `tx` is sent.
    pub closing: bool,
    /// The transport's key for it, once it took it.
    pub key: Option<u64>,
    waker: Option<Waker>,
    dirty: bool,
}

/// The handle the transport keeps for an outbound connection (shared with the
/// [`Upstream`]).
#[derive(Debug, Clone)]
pub struct ClientConn(pub Rc<RefCell<ClientState>>);

crate::counters! {
    /// Counters of the core's outbound connections.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct OutboundCounters {
        /// Connections asked for.
        pub connects: u64,
        /// Established.
        pub established: u64,
        /// Refused by the peer.
        pub refused: u64,
        /// Reset by the peer, or failed.
        pub failed: u64,
        /// Not established in time.
        pub timed_out: u64,
        /// Bytes received.
        pub bytes_in: u64,
        /// Bytes sent.
        pub bytes_out: u64,
    }
}

/// What the core's transport has to do for outbound connections.
#[derive(Default)]
pub struct OutboundState {
    connects: Vec<ClientConn>,
    dirty: Vec<ClientConn>,
    /// Counters.
    pub counters: OutboundCounters,
}

impl OutboundState {
    /// Connections to open (the transport sets each one's phase and key).
    pub fn take_connects(&mut self) -> Vec<ClientConn> {
        std::mem::take(&mut self.connects)
    }

    /// Connections with bytes to send, a close to perform, or room to read again.
    pub fn take_dirty(&mut self) -> Vec<ClientConn> {
        let d = std::mem::take(&mut self.dirty);
        for c in &d {
            c.0.borrow_mut().dirty = false;
        }
        d
    }

    /// True when the transport has work here.
    pub fn has_work(&self) -> bool {
        !self.connects.is_empty() || !self.dirty.is_empty()
    }
}

impl ClientConn {
    fn wake(st: &mut ClientState) {
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// The transport started connecting under `key`.
    pub fn connecting(&self, key: u64) {
        let mut st = self.0.borrow_mut();
        st.phase = ClientPhase::Connecting;
        st.key = Some(key);
    }

    /// Established.
    pub fn established(&self, counters: &mut OutboundCounters) {
        counters.established += 1;
        let mut st = self.0.borrow_mut();
        if st.phase == ClientPhase::Connecting {
            st.phase = ClientPhase::Open;
        }
        Self::wake(&mut st);
    }

    /// Bytes arrived.
    pub fn received(&self, data: &[u8], counters: &mut OutboundCounters) {
        counters.bytes_in += data.len() as u64;
        let mut st = self.0.borrow_mut();
        st.rx.extend_from_slice(data);
        Self::wake(&mut st);
    }

    /// Bytes the transport has not handed to the handler (a TCP engine shrinks its
    /// window by this; a kernel transport stops reading above the buffer size).
    pub fn buffered(&self) -> usize {
        self.0.borrow().rx.len()
    }

    /// True while the transport may read more.
    pub fn wants_read(&self) -> bool {
        self.buffered() < UPSTREAM_BUFFER_BYTES
    }

    /// The first `n` queued bytes left (kernel: written; TCP engine: acknowledged).
    pub fn sent(&self, n: usize, counters: &mut OutboundCounters) {
        counters.bytes_out += n as u64;
        let mut st = self.0.borrow_mut();
        let n = n.min(st.tx.len());
        st.tx.drain(..n);
        Self::wake(&mut st);
    }

    /// The peer finished sending.
    pub fn peer_closed(&self) {
        let mut st = self.0.borrow_mut();
        st.eof = true;
        Self::wake(&mut st);
    }

    /// The connection ended (`None`: orderly).
    pub fn ended(&self, why: Option<EndReason>, counters: &mut OutboundCounters) {
        let mut st = self.0.borrow_mut();
        match (st.phase, why) {
            (ClientPhase::Ended(_), _) => return,
            (ClientPhase::Requested | ClientPhase::Connecting, Some(EndReason::Refused)) => counters.refused += 1,
            (ClientPhase::Requested | ClientPhase::Connecting, Some(EndReason::TimedOut)) => counters.timed_out += 1,
            (_, Some(_)) => counters.failed += 1,
            (_, None) => {}
        }
        st.phase =
            ClientPhase::Ended(why.or(if st.phase == ClientPhase::Open { None } else { Some(EndReason::Reset) }));
        st.eof = true;
        Self::wake(&mut st);
    }

    /// True once the handler dropped its end and everything queued was sent.
    pub fn wants_close(&self) -> bool {
        let st = self.0.borrow();
        st.closing && st.tx.is_empty()
    }

    /// The handler dropped its end: it will queue nothing more (a TCP engine sends FIN
    /// after the queue; a kernel transport closes once it is written).
    pub fn abandoned(&self) -> bool {
        self.0.borrow().closing
    }

    /// Its key, once the transport took it.
    pub fn key(&self) -> Option<u64> {
        self.0.borrow().key
    }

    /// Where to.
    pub fn addr(&self) -> SocketAddr {
        self.0.borrow().addr
    }
}

impl crate::tcp::SendQueue for ClientConn {
    fn len(&self) -> usize {
        self.0.borrow().tx.len()
    }
    fn copy_out(&self, off: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self.0.borrow().tx[off..off + dst.len()]);
    }
}

/// An outbound TCP connection, as a handler uses it. Dropping it closes the
/// connection (after what was written is sent).
pub struct Upstream {
    conn: ClientConn,
    core: Rc<CoreShared>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({:?})", self.conn.0.borrow().addr)
    }
}

fn mark_dirty(core: &CoreShared, conn: &ClientConn) {
    let mut st = conn.0.borrow_mut();
    if !st.dirty {
        st.dirty = true;
        drop(st);
        core.outbound.borrow_mut().dirty.push(conn.clone());
    }
}

/// Asks the core's transport for a connection to `addr`; waits until it is established,
/// fails, or `limit` passes.
pub(crate) async fn connect(
    core: &Rc<CoreShared>,
    addr: SocketAddr,
    limit: Duration,
) -> Result<Upstream, UpstreamError> {
    let conn = ClientConn(Rc::new(RefCell::new(ClientState {
        addr,
        phase: ClientPhase::Requested,
        rx: Vec::new(),
        tx: Vec::new(),
        eof: false,
        closing: false,
        key: None,
        waker: None,
        dirty: false,
    })));
    {
        let mut ob = core.outbound.borrow_mut();
        ob.counters.connects += 1;
        ob.connects.push(conn.clone());
    }
    let up = Upstream { conn: conn.clone(), core: core.clone() };
    let established = poll_fn(|cx| {
        let mut st = conn.0.borrow_mut();
        match st.phase {
            ClientPhase::Open => Poll::Ready(Ok(())),
            ClientPhase::Ended(why) => Poll::Ready(Err(why.unwrap_or(EndReason::Reset).error())),
            ClientPhase::Requested | ClientPhase::Connecting => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    match timeout(core, core.now() + limit, established).await {
        Ok(Ok(())) => Ok(up),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            // Dropping `up` asks the transport to close the half-open connection.
            core.outbound.borrow_mut().counters.timed_out += 1;
            Err(UpstreamError::TimedOut)
        }
    }
}

impl Upstream {
    /// Queues all of `data`; waits while more than [`UPSTREAM_BUFFER_BYTES`] are queued.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), UpstreamError> {
        while !data.is_empty() {
            let n = poll_fn(|cx| {
                let mut st = self.conn.0.borrow_mut();
                if let ClientPhase::Ended(why) = st.phase {
                    return Poll::Ready(Err(why.map_or(UpstreamError::Closed, EndReason::error)));
                }
                let room = UPSTREAM_BUFFER_BYTES.saturating_sub(st.tx.len());
                if room == 0 {
                    st.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let n = room.min(data.len());
                st.tx.extend_from_slice(&data[..n]);
                Poll::Ready(Ok(n))
            })
            .await?;
            mark_dirty(&self.core, &self.conn);
            data = &data[n..];
        }
        Ok(())
    }

    /// Reads what has arrived into `buf` (waiting until something has); 0 at the end of
    /// the peer's data.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, UpstreamError> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// The poll form of [`read`](Self::read), for a future that waits on this
    /// connection and something else at once (it registers `cx`'s waker when nothing has
    /// arrived).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, UpstreamError>> {
        let mut st = self.conn.0.borrow_mut();
        if !st.rx.is_empty() {
            let n = st.rx.len().min(buf.len());
            buf[..n].copy_from_slice(&st.rx[..n]);
            let was_full = st.rx.len() >= UPSTREAM_BUFFER_BYTES;
            st.rx.drain(..n);
            drop(st);
            if was_full {
                mark_dirty(&self.core, &self.conn); // the transport may read again
            }
            return Poll::Ready(Ok(n));
        }
        match st.phase {
            ClientPhase::Ended(Some(why)) => return Poll::Ready(Err(why.error())),
            _ if st.eof => return Poll::Ready(Ok(0)),
            _ => {}
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Queues `data` without waiting, however much is queued already: for a client
    /// that bounds what it has in flight itself (a pipelining database client).
    pub fn queue(&mut self, data: &[u8]) -> Result<(), UpstreamError> {
        {
            let mut st = self.conn.0.borrow_mut();
            if let ClientPhase::Ended(why) = st.phase {
                return Err(why.map_or(UpstreamError::Closed, EndReason::error));
            }
            st.tx.extend_from_slice(data);
        }
        mark_dirty(&self.core, &self.conn);
        Ok(())
    }

    /// Bytes queued and not yet sent (kernel) or acknowledged (TCP engine).
    pub fn unsent(&self) -> usize {
        self.conn.0.borrow().tx.len()
    }

    /// Reads until the peer closes, appending to `out`; fails past `max` bytes.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, UpstreamError> {
        let start = out.len();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out.len() - start);
            }
            if out.len() - start + n > max {
                return Err(UpstreamError::Unreachable(format!("response larger than {max} bytes")));
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Closes the connection after what was written is sent.
    pub fn close(self) {}
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.conn.0.borrow_mut().closing = true;
        mark_dirty(&self.core, &self.conn);
    }
}
