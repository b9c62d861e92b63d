//! What the TCP engine carries on each connection: an HTTP session (accepted) or an
//! outbound client (our active open). The engine's send queue for a connection *is* the
//! session's output — the HTTP engine's output queue, or the client's write buffer — so
//! nothing is copied into a separate TCP buffer, and the HTTP arena is rewound when the
//! last byte of a burst of responses is acknowledged.

use crate::app::{ClientConn, Dispatch, HttpSession};
use crate::tcp::{ConnId, SendQueue, TcpApp};

/// One connection's application on the TCP engine.
// Boxing the HTTP session would cost an allocation per accepted connection, the
// common case; outbound clients are the few.
#[allow(clippy::large_enum_variant)]
pub enum StackSession {
    /// An accepted HTTP connection.
    Http(HttpSession),
    /// An outbound connection a handler opened.
    Client(ClientConn),
}

impl SendQueue for HttpSession {
    fn len(&self) -> usize {
        self.http.output_len()
    }
    fn copy_out(&self, off: usize, dst: &mut [u8]) {
        self.http.copy_output(off, dst);
    }
}

impl TcpApp<Dispatch> for StackSession {
    fn open(_: ConnId, d: &mut Dispatch) -> Self {
        StackSession::Http(d.open())
    }

    fn connected(&mut self, _: ConnId, d: &mut Dispatch) {
        if let StackSession::Client(c) = self {
            c.established(&mut d.exec().core().outbound.borrow_mut().counters);
        }
    }

    fn received(&mut self, data: &[u8], id: ConnId, d: &mut Dispatch) {
        match self {
            StackSession::Http(s) => d.received(id.0, s, data),
            StackSession::Client(c) => c.received(data, &mut d.exec().core().outbound.borrow_mut().counters),
        }
    }

    fn peer_closed(&mut self, id: ConnId, d: &mut Dispatch) {
        match self {
            StackSession::Http(s) => d.peer_closed(id.0, s),
            StackSession::Client(c) => c.peer_closed(),
        }
    }

    fn send_queue(&self) -> &dyn SendQueue {
        match self {
            StackSession::Http(s) => s,
            StackSession::Client(c) => c,
        }
    }

    fn acked(&mut self, n: usize, id: ConnId, d: &mut Dispatch) {
        match self {
            StackSession::Http(s) => d.consumed(id.0, s, n),
            StackSession::Client(c) => c.sent(n, &mut d.exec().core().outbound.borrow_mut().counters),
        }
    }

    fn finishing(&self) -> bool {
        match self {
            StackSession::Http(s) => s.http.finishing(),
            StackSession::Client(c) => c.abandoned(),
        }
    }

    fn buffered(&self) -> usize {
        match self {
            StackSession::Http(s) => s.http.buffered_input(),
            StackSession::Client(c) => c.buffered(),
        }
    }

    fn idle(&self) -> bool {
        match self {
            StackSession::Http(s) => s.http.is_idle(),
            // An outbound connection's owner decides when it ends (and keep-alive
            // probes watch it).
            StackSession::Client(_) => true,
        }
    }
}
