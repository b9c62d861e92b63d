//! A TCP segment as the engine sees it (ports, numbers, flags, options, payload), and
//! its mapping to and from `smoltcp::wire::TcpRepr`.

use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

/// One segment, in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, when ACK is set.
    pub ack: Option<u32>,
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
    /// Window field (unscaled).
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window-scale option.
    pub wscale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option (TSval, TSecr).
    pub ts: Option<(u32, u32)>,
    /// SACK blocks (left edge, right edge), first block first (RFC 2018).
    pub sack: [Option<(u32, u32)>; 3],
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Segment<'a> {
    /// The SACK blocks present.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.sack.iter().flatten().copied()
    }

    /// Sequence space used: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.syn) + u32::from(self.fin)
    }

    /// From a parsed smoltcp representation.
    pub fn from_repr(r: &TcpRepr<'a>) -> Segment<'a> {
        Segment {
            src_port: r.src_port,
            dst_port: r.dst_port,
            seq: r.seq_number.0 as u32,
            ack: r.ack_number.map(|a| a.0 as u32),
            syn: r.control == TcpControl::Syn,
            fin: r.control == TcpControl::Fin,
            rst: r.control == TcpControl::Rst,
            psh: r.control == TcpControl::Psh,
            window: r.window_len,
            mss: r.max_seg_size,
            wscale: r.window_scale,
            sack_permitted: r.sack_permitted,
            ts: r.timestamp.map(|t| (t.tsval, t.tsecr)),
            sack: r.sack_ranges,
            payload: r.payload,
        }
    }

    /// To a smoltcp representation for emitting. SYN/FIN/RST take precedence over PSH,
    /// as only one control flag besides ACK is expressible there.
    pub fn to_repr(&self) -> TcpRepr<'a> {
        let control = if self.syn {
            TcpControl::Syn
        } else if self.fin {
            TcpControl::Fin
        } else if self.rst {
            TcpControl::Rst
        } else if self.psh {
            TcpControl::Psh
        } else {
            TcpControl::None
        };
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.window,
            window_scale: self.wscale,
            max_seg_size: self.mss,
            sack_permitted: self.sack_permitted,
            sack_ranges: self.sack,
            timestamp: self.ts.map(|(tsval, tsecr)| TcpTimestampRepr { tsval, tsecr }),
            payload: self.payload,
        }
    }
}
