//! A [`PacketIo`] wrapper that records every frame, both directions, to a pcap file
//! (microsecond timestamps, Ethernet link type) that tcpdump and tshark read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{IoCounters, PacketIo, TxFull};

const SNAPLEN: u32 = 65535;

/// A pcap file several queues may share.
#[derive(Clone)]
pub struct PcapFile {
    out: Arc<Mutex<BufWriter<File>>>,
}

impl PcapFile {
    /// Creates `path` and writes the pcap global header.
    pub fn create(path: &Path) -> io::Result<PcapFile> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        out.flush()?;
        Ok(PcapFile { out: Arc::new(Mutex::new(out)) })
    }

    /// Appends one frame stamped `at`.
    pub fn record(&self, frame: &[u8], at: SystemTime) {
        let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let incl = frame.len().min(SNAPLEN as usize);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let r = (|| {
            out.write_all(&(t.as_secs() as u32).to_le_bytes())?;
            out.write_all(&t.subsec_micros().to_le_bytes())?;
            out.write_all(&(incl as u32).to_le_bytes())?;
            out.write_all(&(frame.len() as u32).to_le_bytes())?;
            out.write_all(&frame[..incl])
        })();
        if let Err(e) = r {
            tracing::warn!("pcap write failed: {e}");
        }
    }

    /// Flushes buffered records to the file.
    pub fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

/// Records frames passing through `inner`, stamped with the loop's `now` (mapped to
/// wall-clock time through the pair of clocks read when the wrapper was made).
pub struct Pcap<P> {
    inner: P,
    file: PcapFile,
    epoch: (Instant, SystemTime),
}

impl<P: PacketIo> Pcap<P> {
    /// Wraps `inner`, recording to `file`; `epoch` pairs one instant with its wall time.
    pub fn new(inner: P, file: PcapFile, epoch: (Instant, SystemTime)) -> Self {
        Pcap { inner, file, epoch }
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0)
    }
}

impl<P: PacketIo> PacketIo for Pcap<P> {
    fn recv(&mut self, now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let at = self.wall(now);
        let file = &self.file;
        self.inner.recv(now, max, &mut |frame| {
            file.record(frame, at);
            f(frame)
        })
    }

    fn send(&mut self, now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        self.inner.send(now, frame)?;
        self.file.record(frame, self.wall(now));
        Ok(())
    }

    fn flush(&mut self, now: Instant) {
        self.inner.flush(now);
    }

    fn wait(&mut self, now: Instant, timeout: Duration) {
        self.file.flush();
        self.inner.wait(now, timeout);
    }

    fn counters(&self) -> IoCounters {
        self.inner.counters()
    }

    fn tx_stalled(&self) -> bool {
        self.inner.tx_stalled()
    }

    fn set_busy_poll(&mut self, on: bool) {
        self.inner.set_busy_poll(on)
    }

    fn frames(&self) -> Option<super::FrameUse> {
        self.inner.frames()
    }
}

impl<P> Drop for Pcap<P> {
    fn drop(&mut self) {
        self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::loopback::Loopback;

    #[test]
    #[cfg_attr(miri, ignore)]
    fn writes_a_readable_pcap() {
        let path = std::env::temp_dir().join(format!("px-pcap-test-{}.pcap", std::process::id()));
        let file = PcapFile::create(&path).unwrap();
        let (a, mut b) = Loopback::pair(8);
        let now = Instant::now();
        let mut a = Pcap::new(a, file, (now, UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        a.send(now, &[0xaa; 60]).unwrap();
        b.send(now, &[0xbb; 42]).unwrap();
        assert_eq!(a.recv(now, 8, &mut |_| {}), 1);
        drop(a);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 42);
        assert_eq!(u32::from_le_bytes(bytes[24 + 8..24 + 12].try_into().unwrap()), 60);
        // Stamped from the passed time, not the wall clock.
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 1_700_000_000);
        std::fs::remove_file(path).unwrap();
    }
}
