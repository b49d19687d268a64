//! ebpf_exporter's `post_attach_mark()`: a function of the exporter's own,
//! called once after a config's programs are attached, so that its
//! `SEC("uprobe//proc/self/exe:post_attach_mark")` programs can initialise
//! the config (fill a map, set a gauge) before anything else runs them.
//!
//! The probe is placed by file offset, worked out from where the function
//! sits in memory and the mapping /proc/self/maps shows it in, never by
//! symbol: the static binary of `make dist` is stripped and has no symbol
//! table. It is on this process only, and only for the one call: a later
//! call for another config, or another exporter running the same binary,
//! never runs a config's programs again.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use libbpf_rs::{Link, UprobeOpts};

use super::sections::POST_ATTACH_MARK;
use crate::metrics::{Failure, Reason};

/// What the programs probe. The name is ebpf_exporter's; the body is a
/// barrier the compiler keeps, so the function is neither left out nor
/// folded into another.
#[no_mangle]
#[inline(never)]
pub extern "C" fn post_attach_mark() {
    std::hint::black_box(());
}

/// Held from a config's first program on `post_attach_mark` until the
/// call is over: no other config calls it while they are on it.
static MARKING: Mutex<()> = Mutex::new(());

/// One config's programs on `post_attach_mark`, until [`Marks::call`].
#[derive(Default)]
pub struct Marks {
    links: Vec<Link>,
    turn: Option<MutexGuard<'static, ()>>,
}

impl Marks {
    /// Puts `prog` on `post_attach_mark`, for this process only.
    pub fn attach(&mut self, prog: &libbpf_rs::ProgramMut<'_>) -> Result<(), Failure> {
        if self.turn.is_none() {
            self.turn = Some(MARKING.lock().unwrap_or_else(PoisonError::into_inner));
        }
        let what = format!("attaching SEC \"{POST_ATTACH_MARK}\" to the exporter's post_attach_mark");
        let offset = offset().map_err(|e| Failure::new(Reason::Failed, format!("{what} failed: {e}")))?;
        let opts = UprobeOpts {
            func_name: None,
            ..Default::default()
        };
        // A pid is at most 2^22 (PID_MAX_LIMIT): it fits.
        let pid = std::process::id() as i32;
        let link = prog
            .attach_uprobe_with_opts(pid, "/proc/self/exe", offset, opts)
            .map_err(|e| {
                let (reason, hint) = match e.kind() {
                    libbpf_rs::ErrorKind::PermissionDenied => (
                        Reason::Permission,
                        crate::privileges::permission_hint(POST_ATTACH_MARK),
                    ),
                    _ => (Reason::Failed, String::new()),
                };
                Failure::new(
                    reason,
                    format!("{what} (offset {offset:#x} of /proc/self/exe) failed: {e:#}{hint}"),
                )
            })?;
        self.links.push(link);
        Ok(())
    }

    /// Runs the programs attached, if any: one call, then they come off.
    pub fn call(self) {
        if !self.links.is_empty() {
            // Called through an opaque pointer: the call cannot be left out.
            std::hint::black_box(post_attach_mark as extern "C" fn())();
        }
        drop(self.links);
        drop(self.turn);
    }
}

/// Where `post_attach_mark` is in the exporter's file: its address, less
/// the start of the mapping it is in, plus that mapping's file offset.
fn offset() -> io::Result<usize> {
    let address = post_attach_mark as *const () as usize;
    let exe = std::fs::metadata("/proc/self/exe")?.ino();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    mapped_offset(&maps, address, exe).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no mapping of /proc/self/exe (inode {exe}) holds its address {address:#x} in /proc/self/maps"
            ),
        )
    })
}

/// The file offset of `address` in a mapping of inode `inode`, from the
/// lines of /proc/PID/maps (`start-end perms offset dev inode path`).
fn mapped_offset(maps: &str, address: usize, inode: u64) -> Option<usize> {
    maps.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields.first()?.split_once('-')?;
        let hex = |s: &str| usize::from_str_radix(s, 16).ok();
        let (start, end, file_offset) = (hex(start)?, hex(end)?, hex(fields.get(2)?)?);
        let mapped_inode: u64 = fields.get(4)?.parse().ok()?;
        ((start..end).contains(&address) && mapped_inode == inode).then(|| address - start + file_offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_the_address_less_the_mapping_start_plus_its_file_offset() {
        let maps = "\
5600aa000000-5600aa100000 r--p 00000000 fd:01 4242  /usr/bin/bpf-exporter
5600aa100000-5600aa400000 r-xp 00100000 fd:01 4242  /usr/bin/bpf-exporter
";
        assert_eq!(mapped_offset(maps, 0x5600aa123456, 4242), Some(0x123456));
        // Another file's mapping, or an address mapped nowhere.
        assert_eq!(mapped_offset(maps, 0x5600aa123456, 7), None);
        assert_eq!(mapped_offset(maps, 0x1000, 4242), None);
    }

    /// The function is in this very binary, where the offset says: the
    /// bytes at the file offset are the bytes at the address.
    #[test]
    fn offset_points_at_the_function_in_the_running_binary() {
        use std::os::unix::fs::FileExt;
        let offset = offset().unwrap();
        let mut in_file = [0u8; 4];
        let exe = std::fs::File::open("/proc/self/exe").unwrap();
        exe.read_exact_at(&mut in_file, offset as u64).unwrap();
        let address = post_attach_mark as *const u8;
        // SAFETY: the first bytes of a function of this binary, mapped
        // readable and executable.
        let in_memory = unsafe { std::slice::from_raw_parts(address, 4) };
        assert_eq!(in_file, in_memory);
    }
}
