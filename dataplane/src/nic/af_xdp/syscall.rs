//! Thin, checked wrappers over the syscalls AF_XDP needs. Each returns the OS error
//! unchanged so callers can say exactly what failed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Whether the running kernel's version is at least `major.minor` (from
/// /proc/sys/kernel/osrelease; false if it cannot be read).
pub(super) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// bpf(2) with a command-specific attribute struct.
pub(super) fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a valid, initialised #[repr(C)] struct of the layout the kernel
    // expects for `cmd` (zero-padded), and size_of::<T>() tells the kernel how much of
    // it to read; the kernel writes back at most that much.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    check(rc as libc::c_int)
}

/// An AF_XDP socket.
pub(super) fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked.
    let fd = check(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// setsockopt(2) with a plain-data value.
pub(super) fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points at size_of::<T>() readable bytes for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc).map(drop)
}

/// getsockopt(2) into a plain-data value; returns the length the kernel wrote.
pub(super) fn getsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &mut T) -> io::Result<usize> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value points at size_of::<T>() writable bytes and len says so; the kernel
    // writes at most len bytes and updates len.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (value as *mut T).cast(), &mut len) };
    check(rc).map(|_| len as usize)
}

/// bind(2) of an AF_XDP socket.
pub(super) fn bind_xsk(fd: &OwnedFd, addr: &libc::sockaddr_xdp) -> io::Result<()> {
    // SAFETY: addr is a valid sockaddr_xdp and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    check(rc).map(drop)
}

/// Tells the kernel to process the TX ring (need_wakeup).
pub(super) fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer reads no memory.
    let rc = unsafe { libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // EAGAIN/EBUSY/ENOBUFS: the kernel is busy with the ring; it will be kicked again.
        if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Tells the kernel the fill ring has entries (need_wakeup on the fill ring).
pub(super) fn kick_rx(fd: RawFd) {
    // SAFETY: a zero-length receive with a null buffer writes no memory.
    unsafe {
        libc::recvfrom(fd, std::ptr::null_mut(), 0, libc::MSG_DONTWAIT, std::ptr::null_mut(), std::ptr::null_mut())
    };
}

/// Waits until `fd` (or `also`, when given) is readable or `timeout_ms` passes; says
/// whether `also` was readable (so an eventfd is read only when it was signalled: a wake-up
/// by a frame would otherwise cost a failed read(2) every time).
pub(super) fn poll_in(fd: RawFd, also: Option<RawFd>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = [
        libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: also.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds for the duration of the call (fd -1 is ignored by poll).
    let rc = unsafe { libc::poll(p.as_mut_ptr(), 2, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(p[1].revents != 0)
}

/// Waits up to `timeout` (microsecond precision, unlike poll(2)'s milliseconds) for `fd`
/// to become readable.
pub(crate) fn ppoll_in(fd: RawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd and a timespec that live for the call; no signal mask.
    let rc = unsafe { libc::ppoll(p.as_mut_ptr(), 1, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(rc > 0)
}

/// A non-blocking eventfd.
pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) has no memory arguments; the result is checked.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fd is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter (wakes a poller).
pub(super) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, which lives for the call.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd's counter.
pub(super) fn eventfd_drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into `v`, which lives for the call.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// The interface index of `name`.
pub(super) fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}
