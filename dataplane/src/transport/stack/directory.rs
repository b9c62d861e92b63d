//! Which queue owns each TCP flow, for segments that arrive on another queue.
//!
//! A NIC's RSS hashes the 4-tuple, so a flow's segments stay on one queue. Software
//! steering does not always: on veth the receive queue follows the sender's transmit
//! queue, and Linux picks a new one when it retransmits; and the replies of an outbound
//! connection arrive wherever the peer's side sends them. The directory is consulted
//! only for segments whose tuple the local engine does not know (new connections and
//! strays), and a stray frame is handed to its owner's bounded inbox. Its lock is taken
//! when a connection opens or closes, not per segment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;

/// Frames waiting in one queue's inbox at most.
const INBOX_FRAMES: usize = 4096;

/// The flow directory shared by a server's queues.
pub struct FlowDirectory {
    owners: Mutex<HashMap<(SocketAddr, SocketAddr), usize>>,
    inboxes: Vec<ArrayQueue<Vec<u8>>>,
}

impl FlowDirectory {
    /// A directory for `queues` queues.
    pub fn new(queues: usize) -> Arc<FlowDirectory> {
        Arc::new(FlowDirectory {
            owners: Mutex::new(HashMap::new()),
            inboxes: (0..queues).map(|_| ArrayQueue::new(INBOX_FRAMES)).collect(),
        })
    }

    /// The queue owning (local, remote), if any.
    pub fn owner(&self, key: (SocketAddr, SocketAddr)) -> Option<usize> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied()
    }

    /// Hands `frame` to queue `owner`; false if its inbox is full.
    pub fn forward(&self, owner: usize, frame: &[u8]) -> bool {
        self.inboxes[owner].push(frame.to_vec()).is_ok()
    }

    /// Frames handed to queue `me`, at most `max`.
    pub fn take(&self, me: usize, max: usize) -> Vec<Vec<u8>> {
        let inbox = &self.inboxes[me];
        (0..max).map_while(|_| inbox.pop()).collect()
    }

    /// Records connections queue `me` created and removed.
    pub fn publish(&self, me: usize, changes: Vec<(SocketAddr, SocketAddr, bool)>) {
        if changes.is_empty() {
            return;
        }
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        for (local, remote, created) in changes {
            if created {
                owners.insert((local, remote), me);
            } else if owners.get(&(local, remote)) == Some(&me) {
                owners.remove(&(local, remote));
            }
        }
    }
}
