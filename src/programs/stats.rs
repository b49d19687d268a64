//! Kernel run-time statistics of BPF programs: how often each one ran and
//! for how long, so operators see what every program costs per event.
//!
//! The kernel only counts while statistics are enabled, which costs two
//! clock reads per program run; [`enable`] turns them on for as long as the
//! returned fd lives (`BPF_ENABLE_STATS`), so they go off when the exporter
//! exits instead of staying on like the `kernel.bpf_stats_enabled` sysctl.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Run-time totals of one program since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Turns on run-time statistics until the fd is dropped.
pub fn enable() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall wrapper with no pointers.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The totals of a loaded program.
pub fn read(prog: BorrowedFd<'_>) -> io::Result<RunStats> {
    let info = info(prog)?;
    Ok(RunStats {
        run_time_ns: info.run_time_ns,
        run_count: info.run_cnt,
    })
}

/// A loaded program's id and tag (hex), as `bpftool prog` shows them.
pub fn identity(prog: BorrowedFd<'_>) -> io::Result<(u32, String)> {
    let info = info(prog)?;
    let tag = info.tag.iter().map(|b| format!("{b:02x}")).collect();
    Ok((info.id, tag))
}

/// What the kernel says of a loaded program (no arrays asked for).
pub(crate) fn info(prog: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_prog_info> {
    // SAFETY: zero is a valid value for every field of bpf_prog_info.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is `len` bytes long; the kernel writes at most that.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}
