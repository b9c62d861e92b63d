//! The XSKMAP and the 6-instruction XDP program that redirects each queue's frames to
//! the socket bound to that queue (frames of queues without a socket go to the kernel),
//! attached with BPF_LINK_CREATE so the kernel detaches it when our process exits, even
//! on `kill -9`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::syscall::bpf;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// XDP attach flags.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// XDP attach flags.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    _pad: [[u8; 32]; 2],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [[u8; 32]; 2],
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _pad: [u8; 32],
    _pad2: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

fn fd_from(rc: libc::c_int) -> OwnedFd {
    // SAFETY: rc is a new descriptor returned by bpf(2) that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(rc) }
}

/// An XSKMAP: queue index → XSK socket.
pub(crate) struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    pub fn create(entries: u32) -> io::Result<XskMap> {
        let mut name = [0u8; 16];
        name[..7].copy_from_slice(b"px_xsks");
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: name,
            ..Default::default()
        };
        Ok(XskMap { fd: fd_from(bpf(BPF_MAP_CREATE, &mut attr)?) })
    }

    /// Points `queue` at `xsk`.
    pub fn set(&self, queue: u32, xsk: &OwnedFd) -> io::Result<()> {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

/// The loaded redirect program.
pub(crate) struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `r2 = ctx->rx_queue_index; r1 = map; r3 = XDP_PASS; call redirect_map; exit`.
    pub fn load(map: &XskMap) -> io::Result<Program> {
        let insns = [
            insn(0x61, 2, 1, 16, 0),                    // r2 = *(u32 *)(r1 + 16): rx_queue_index
            insn(0x18, 1, 1, 0, map.fd.as_raw_fd()),    // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
            insn(0x00, 0, 0, 0, 0),                     //      (second half of ld_imm64)
            insn(0xb7, 3, 0, 0, XDP_PASS),              // r3 = XDP_PASS (action when no socket)
            insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // call bpf_redirect_map
            insn(0x95, 0, 0, 0, 0),                     // exit
        ];
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"px_xsk_rx");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
            _pad: [[0; 32]; 2],
        };
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(Program { fd: fd_from(fd) }),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(0);
                let text = String::from_utf8_lossy(&log[..end]);
                Err(io::Error::new(e.kind(), format!("{e}; verifier: {}", text.trim())))
            }
        }
    }
}

/// The program attached to an interface; detached when dropped or when the process dies.
pub(crate) struct Link {
    _fd: OwnedFd,
}

impl Link {
    pub fn attach(prog: &Program, ifindex: u32, flags: u32) -> io::Result<Link> {
        let mut attr = LinkCreateAttr {
            prog_fd: prog.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
            ..Default::default()
        };
        Ok(Link { _fd: fd_from(bpf(BPF_LINK_CREATE, &mut attr)?) })
    }
}
