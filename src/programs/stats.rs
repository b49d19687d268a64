//! Kernel run-time statistics of BPF programs: how often each one ran and
//! for how long, so operators see what every program costs per event.
//!
//! The kernel only counts while statistics are enabled, which costs two
//! clock reads per program run; [`enable`] turns them on for as long as the
//! returned fd lives (`BPF_ENABLE_STATS`), so they go off when the exporter
//! exits instead of staying on like the `kernel.bpf_stats_enabled` sysctl.
//! The exporter holds its fd in [`keep_enabled`]: for `--bpf.stats`, and
//! for the CPU budgets ([`super::budget`]), which measure with them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

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

/// Statistics this process turned on, for the rest of its life.
static KEPT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Turns statistics on until the process exits, unless it already did.
/// Needs CAP_SYS_ADMIN the first time: the start calls it before giving
/// that up, when it knows statistics are wanted.
pub fn keep_enabled() -> io::Result<()> {
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if kept.is_none() {
        *kept = Some(enable()?);
    }
    Ok(())
}

/// Whether [`keep_enabled`] turned statistics on.
pub fn kept_enabled() -> bool {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner).is_some()
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
