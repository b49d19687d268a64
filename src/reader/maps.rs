//! Whole-map reads from the kernel: `BPF_MAP_LOOKUP_BATCH` where the kernel
//! has it, per-key iteration otherwise, per-CPU maps included; arrays
//! created `BPF_F_MMAPABLE`, and program globals (libbpf creates their
//! sections so), straight from their memory mapping, without a syscall.
//!
//! libbpf-rs's `lookup_batch` is not used: it refuses per-CPU maps and ends
//! its iteration quietly on some errors. Here every error is returned, so an
//! entry is never lost without the read being reported as failed.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapHandle, MapType};

use crate::config::GlobalSpec;

/// Entries fetched per batch call; doubled on demand when a hash bucket
/// holds more (`ENOSPC`).
const BATCH_ENTRIES: usize = 4096;

/// Every entry of a map, keys and values in flat buffers so that a read of
/// a big map is two allocations, not one per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapDump {
    pub key_size: usize,
    /// Values per entry: the possible CPUs for per-CPU maps, else 1.
    pub values_per_entry: usize,
    pub keys: Vec<u8>,
    pub values: Vec<u64>,
}

impl MapDump {
    pub fn new(key_size: usize, values_per_entry: usize) -> Self {
        MapDump {
            key_size,
            values_per_entry,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// This dump's buffers, emptied, as a dump of this layout; this one is
    /// left empty.
    fn take_emptied(&mut self, key_size: usize, values_per_entry: usize) -> MapDump {
        let mut dump = std::mem::take(self);
        dump.keys.clear();
        dump.values.clear();
        (dump.key_size, dump.values_per_entry) = (key_size, values_per_entry);
        dump
    }

    pub fn len(&self) -> usize {
        self.keys.len().checked_div(self.key_size).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, key: &[u8], values: &[u64]) {
        debug_assert_eq!((key.len(), values.len()), (self.key_size, self.values_per_entry));
        self.keys.extend_from_slice(key);
        self.values.extend_from_slice(values);
    }

    /// `(key, values)` pairs; `values` has one u64 per CPU for per-CPU maps.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u64])> {
        self.keys
            .chunks_exact(self.key_size.max(1))
            .zip(self.values.chunks_exact(self.values_per_entry.max(1)))
    }
}

/// Anything the reader can take a whole-map dump from. The kernel is the
/// real one; tests of decoding and aggregation use fixed dumps.
pub trait MapSource: Send {
    fn read(&mut self) -> io::Result<MapDump>;
    /// Takes back a dump once it is turned into metrics, so the next read
    /// can reuse its buffers: a big map's dump is tens of megabytes, which
    /// fresh memory would fault in page by page on every read.
    fn recycle(&mut self, _dump: MapDump) {}
    /// How the last read was done, for self-metrics and logs.
    fn method(&self) -> ReadMethod;
    /// For an event stream, the events lost so far (the buffer was full).
    fn lost(&self) -> Option<u64> {
        None
    }
    /// For a map whose entries come and go (a hash), the most it can
    /// hold: a full hash map refuses new keys, an LRU one evicts old ones.
    /// `None` for arrays, which always hold all their entries, and for
    /// what is not a map.
    fn capacity(&self) -> Option<usize> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    Batch,
    PerKey,
    /// Counted as they arrive ([`super::events`]); not a flag value.
    Events,
    /// Loaded from the map's memory mapping ([`Mapping`]); chosen by the
    /// map, not by the flag.
    Mmap,
}

impl ReadMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMethod::Batch => "batch",
            ReadMethod::PerKey => "per_key",
            ReadMethod::Events => "events",
            ReadMethod::Mmap => "mmap",
        }
    }
}

/// The values of an array created `BPF_F_MMAPABLE`, mapped read-only from
/// its fd: one after another, each rounded up to 8 bytes, as
/// `array_map_mmap()` lays them out (kernel/bpf/arraymap.c). A program's
/// writes show here at once; a read is loads, not a syscall. The mapping
/// holds the map alive by itself and is unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone, only ever read, and
// unmapped once, on drop; any thread may do either.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `None` unless `handle` is an array created `BPF_F_MMAPABLE` that
    /// the kernel lets us map: the reads then go through syscalls.
    fn of(handle: &MapHandle) -> Option<Mapping> {
        if handle.map_type() != MapType::Array {
            return None;
        }
        let flags = handle.info().ok()?.info.map_flags;
        if flags & libbpf_sys::BPF_F_MMAPABLE == 0 {
            return None;
        }
        let stride = (handle.value_size() as usize).next_multiple_of(8);
        let len = stride
            .checked_mul(handle.max_entries() as usize)
            .filter(|&n| n > 0)?;
        // SAFETY: a new read-only shared mapping of the map's first `len`
        // bytes, at an address the kernel picks; nothing else is touched.
        // The kernel refuses a length past the map's values.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                handle.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            tracing::info!(map = ?handle.name(), "mmap refused ({e}); reading through syscalls");
            return None;
        }
        Some(Mapping {
            ptr: ptr.cast_const().cast(),
            len,
        })
    }

    /// Every 8-byte slot, in order: the values of an array of u64s.
    fn u64s(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len / 8).map(|i| {
            // SAFETY: slot `i` ends at or before `len`, inside the mapping,
            // which lives as long as `self`; the mapping is page-aligned, so
            // the slot is 8-aligned. A volatile load of an aligned u64 is
            // one load: a program's concurrent add is seen before or after.
            unsafe { std::ptr::read_volatile(self.ptr.add(i * 8).cast::<u64>()) }
        })
    }

    /// The `size` bytes at `offset` (native order), loaded whole when
    /// `size` is 2, 4 or 8 and they are aligned to it, so that a program's
    /// concurrent write is seen before or after, never half; `None` past
    /// the mapping.
    fn bytes(&self, offset: usize, size: usize) -> Option<[u8; 8]> {
        if offset.checked_add(size)? > self.len || size > 8 {
            return None;
        }
        // SAFETY: `offset..offset + size` is inside the mapping, which
        // lives as long as `self`.
        let at = unsafe { self.ptr.add(offset) };
        let mut out = [0u8; 8];
        // SAFETY (all loads): `at..at + size` is mapped and readable, and
        // each typed load is only made when `at` is aligned to its type.
        unsafe {
            match size {
                2 if at.cast::<u16>().is_aligned() => {
                    out[..2].copy_from_slice(&std::ptr::read_volatile(at.cast::<u16>()).to_ne_bytes())
                }
                4 if at.cast::<u32>().is_aligned() => {
                    out[..4].copy_from_slice(&std::ptr::read_volatile(at.cast::<u32>()).to_ne_bytes())
                }
                8 if at.cast::<u64>().is_aligned() => {
                    out = std::ptr::read_volatile(at.cast::<u64>()).to_ne_bytes()
                }
                _ => {
                    for (i, byte) in out[..size].iter_mut().enumerate() {
                        *byte = std::ptr::read_volatile(at.add(i));
                    }
                }
            }
        }
        Some(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned and took,
        // and nothing borrows the mapping past `self`.
        unsafe { libc::munmap(self.ptr.cast_mut().cast(), self.len) };
    }
}

/// A map in the kernel with u64 values.
#[derive(Debug)]
pub struct KernelMap {
    handle: MapHandle,
    key_size: usize,
    values_per_entry: usize,
    max_entries: usize,
    method: ReadMethod,
    /// Entries of the last read: the next one reserves room for as many.
    last_len: usize,
    /// For an array created `BPF_F_MMAPABLE`: read from here, whatever
    /// the method asked for.
    mapping: Option<Mapping>,
    /// The last dump, given back ([`MapSource::recycle`]): the next batch
    /// read fills its buffers.
    spare: MapDump,
}

impl KernelMap {
    /// `method` is the preferred one; batch falls back to per-key for good
    /// when the kernel lacks batch operations for this map type. An array
    /// created `BPF_F_MMAPABLE` is read through its mapping instead
    /// ([`ReadMethod::Mmap`]).
    pub fn new(handle: MapHandle, method: ReadMethod) -> io::Result<Self> {
        if handle.value_size() != 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "map {:?} has {}-byte values, not u64",
                    handle.name(),
                    handle.value_size()
                ),
            ));
        }
        let percpu = crate::programs::is_percpu(handle.map_type());
        let values_per_entry = if percpu {
            libbpf_rs::num_possible_cpus().map_err(io::Error::other)?
        } else {
            1
        };
        let mapping = Mapping::of(&handle);
        Ok(KernelMap {
            key_size: handle.key_size() as usize,
            max_entries: handle.max_entries() as usize,
            handle,
            values_per_entry,
            method: if mapping.is_some() {
                ReadMethod::Mmap
            } else {
                method
            },
            last_len: 0,
            mapping,
            spare: MapDump::default(),
        })
    }

    /// Every index of the array (a u32 key, one value) with its value,
    /// loaded from the mapping into the buffers of `dump`.
    fn read_mapped(mapping: &Mapping, mut dump: MapDump) -> MapDump {
        dump.values.extend(mapping.u64s());
        dump.keys
            .extend((0..dump.values.len() as u32).flat_map(u32::to_ne_bytes));
        dump
    }

    /// Reads straight into the dump's buffers, sized from the last read,
    /// so a big map costs no copy and no regrowth.
    fn read_batch(&mut self) -> io::Result<MapDump> {
        let fd = self.handle.as_fd().as_raw_fd();
        let (ks, vpe) = (self.key_size, self.values_per_entry);
        let mut dump = self.spare.take_emptied(ks, vpe);
        let mut chunk = self.max_entries.clamp(1, BATCH_ENTRIES);
        let expected = (self.last_len + chunk).min(self.max_entries + chunk);
        dump.keys.reserve(expected * ks);
        dump.values.reserve(expected * vpe);
        // Hash maps use a 4-byte bucket cursor, arrays a key-sized one.
        let token = ks.max(8);
        let (mut in_token, mut out_token) = (vec![0u8; token], vec![0u8; token]);
        let mut read = 0usize;
        let mut first = true;
        loop {
            dump.keys.resize((read + chunk) * ks, 0);
            dump.values.resize((read + chunk) * vpe, 0);
            let mut count = chunk as u32;
            let opts = libbpf_sys::bpf_map_batch_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
                elem_flags: 0,
                flags: 0,
            };
            let in_ptr = if first {
                std::ptr::null_mut()
            } else {
                in_token.as_mut_ptr().cast()
            };
            // SAFETY: past `read` entries, the buffers hold `chunk` keys and
            // `chunk * vpe` u64 values; the tokens are at least as large as
            // any cursor the kernel writes.
            let rc = unsafe {
                libbpf_sys::bpf_map_lookup_batch(
                    fd,
                    in_ptr,
                    out_token.as_mut_ptr().cast(),
                    dump.keys[read * ks..].as_mut_ptr().cast(),
                    dump.values[read * vpe..].as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let errno = if rc < 0 { -rc } else { 0 };
            let n = (count as usize).min(chunk);
            match errno {
                0 | libc::ENOENT => {
                    read += n;
                    if errno == libc::ENOENT {
                        dump.keys.truncate(read * ks);
                        dump.values.truncate(read * vpe);
                        self.last_len = read;
                        return Ok(dump);
                    }
                    std::mem::swap(&mut in_token, &mut out_token);
                    first = false;
                }
                // One hash bucket holds more entries than fit; retry bigger.
                libc::ENOSPC if n == 0 && chunk < self.max_entries.max(1) * 2 => chunk *= 2,
                _ => return Err(io::Error::from_raw_os_error(errno)),
            }
            if read > self.max_entries {
                return Err(io::Error::other(format!(
                    "batch read returned more than max_entries ({}) entries",
                    self.max_entries
                )));
            }
        }
    }

    fn read_per_key(&self) -> io::Result<MapDump> {
        let fd = self.handle.as_fd().as_raw_fd();
        let (ks, vpe) = (self.key_size, self.values_per_entry);
        let mut dump = MapDump::new(ks, vpe);
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut prev: Option<Vec<u8>> = None;
        let mut next = vec![0u8; ks];
        let mut values = vec![0u64; vpe];
        // A hash map walk restarts when the previous key was deleted under
        // it; bound the walk so a busy map cannot keep us here forever.
        let limit = self.max_entries.saturating_mul(4).max(64);
        for _ in 0..limit {
            let prev_ptr = prev.as_ref().map_or(std::ptr::null(), |k| k.as_ptr().cast());
            // SAFETY: `next` holds one key; `prev` is one key or null.
            let rc = unsafe { libbpf_sys::bpf_map_get_next_key(fd, prev_ptr, next.as_mut_ptr().cast()) };
            if rc < 0 {
                return if -rc == libc::ENOENT {
                    Ok(dump)
                } else {
                    Err(io::Error::from_raw_os_error(-rc))
                };
            }
            if seen.insert(next.clone()) {
                // SAFETY: `values` holds one value per possible CPU (8 bytes each).
                let rc = unsafe {
                    libbpf_sys::bpf_map_lookup_elem(fd, next.as_ptr().cast(), values.as_mut_ptr().cast())
                };
                match -rc {
                    0 => dump.push(&next, &values),
                    libc::ENOENT => {} // deleted since get_next_key: not an entry any more
                    errno => return Err(io::Error::from_raw_os_error(errno)),
                }
            }
            prev = Some(next.clone());
        }
        Err(io::Error::other(format!(
            "per-key walk did not finish after {limit} steps: the map changes faster than it can be walked"
        )))
    }
}

/// Errors meaning "this kernel has no batch ops for this map type".
fn batch_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | 524 /* ENOTSUPP */)
    )
}

impl MapSource for KernelMap {
    fn recycle(&mut self, dump: MapDump) {
        self.spare = dump;
    }

    fn read(&mut self) -> io::Result<MapDump> {
        if let Some(mapping) = &self.mapping {
            let dump = self.spare.take_emptied(self.key_size, self.values_per_entry);
            return Ok(KernelMap::read_mapped(mapping, dump));
        }
        if self.method == ReadMethod::Batch {
            match self.read_batch() {
                Err(e) if batch_unsupported(&e) => {
                    tracing::info!(map = ?self.handle.name(), "batch lookups unsupported ({e}); reading per key");
                    self.method = ReadMethod::PerKey;
                }
                result => return result,
            }
        }
        self.read_per_key()
    }

    fn method(&self) -> ReadMethod {
        self.method
    }

    fn capacity(&self) -> Option<usize> {
        matches!(
            self.handle.map_type(),
            MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash
        )
        .then_some(self.max_entries)
    }
}

/// One integer global variable, read out of its section's map (an array of
/// one value the size of the section) and reported as a one-entry dump:
/// loaded from the section's mapping when libbpf created it `BPF_F_MMAPABLE`
/// (it does where the kernel can), else copied out with a lookup.
#[derive(Debug)]
pub struct GlobalVariable {
    handle: MapHandle,
    global: GlobalSpec,
    value: Vec<u8>,
    mapping: Option<Mapping>,
}

impl GlobalVariable {
    pub fn new(handle: MapHandle, global: GlobalSpec) -> io::Result<Self> {
        let section = handle.value_size() as usize;
        if global.offset + global.size > section {
            return Err(io::Error::other(format!(
                "variable at {}..{} is outside its {section}-byte section",
                global.offset,
                global.offset + global.size
            )));
        }
        Ok(GlobalVariable {
            mapping: Mapping::of(&handle),
            handle,
            global,
            value: vec![0u8; section],
        })
    }
}

impl MapSource for GlobalVariable {
    fn read(&mut self) -> io::Result<MapDump> {
        let key = 0u32.to_ne_bytes();
        let GlobalSpec { offset, size, signed } = self.global;
        let value = match &self.mapping {
            Some(mapping) => {
                let bytes = mapping.bytes(offset, size).ok_or_else(|| {
                    io::Error::other(format!("variable at {offset} is outside the mapping"))
                })?;
                widen(&bytes[..size], signed)
            }
            None => {
                let fd = self.handle.as_fd().as_raw_fd();
                // SAFETY: `value` holds one value of the map's value size.
                let rc = unsafe {
                    libbpf_sys::bpf_map_lookup_elem(fd, key.as_ptr().cast(), self.value.as_mut_ptr().cast())
                };
                if rc < 0 {
                    return Err(io::Error::from_raw_os_error(-rc));
                }
                widen(&self.value[offset..offset + size], signed)
            }
        };
        let mut dump = MapDump::new(key.len(), 1);
        dump.push(&key, &[value]);
        Ok(dump)
    }

    fn method(&self) -> ReadMethod {
        if self.mapping.is_some() {
            ReadMethod::Mmap
        } else {
            ReadMethod::PerKey
        }
    }
}

/// A native-endian integer of 1 to 8 bytes as u64, sign-extended when
/// signed so that a gauge reads it back as the same i64.
fn widen(bytes: &[u8], signed: bool) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    if cfg!(target_endian = "little") {
        buf[..n].copy_from_slice(&bytes[..n]);
        if signed && n < 8 && bytes[n - 1] & 0x80 != 0 {
            buf[n..].fill(0xff);
        }
        u64::from_le_bytes(buf)
    } else {
        buf[8 - n..].copy_from_slice(&bytes[..n]);
        if signed && n < 8 && bytes[0] & 0x80 != 0 {
            buf[..8 - n].fill(0xff);
        }
        u64::from_be_bytes(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_widen_with_their_sign() {
        let v = |x: i64, n: usize, signed: bool| widen(&x.to_ne_bytes()[..n], signed) as i64;
        assert_eq!(v(-5, 4, true), -5);
        assert_eq!(v(-5, 4, false), 0xffff_fffb);
        assert_eq!(v(-1, 1, true), -1);
        assert_eq!(v(200, 1, false), 200);
        assert_eq!(v(i64::MIN, 8, true), i64::MIN);
        assert_eq!(v(7, 2, true), 7);
    }

    #[test]
    fn mapped_integers_load_whole_when_aligned_and_bytewise_when_not() {
        let len = 4096;
        // SAFETY: a new private anonymous page; `Mapping` unmaps it on drop.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let bytes: Vec<u8> = (1..=24).collect();
        // SAFETY: the page holds 4096 writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), page.cast(), bytes.len()) };
        let mapping = Mapping {
            ptr: page.cast_const().cast(),
            len,
        };
        let at = |offset: usize, size: usize| mapping.bytes(offset, size).map(|b| b[..size].to_vec());
        for (offset, size) in [(8, 8), (1, 8), (4, 4), (3, 4), (2, 2), (5, 2), (7, 1)] {
            assert_eq!(
                at(offset, size),
                Some(bytes[offset..offset + size].to_vec()),
                "{offset}+{size}"
            );
        }
        assert_eq!(at(len - 2, 2).map(|b| b.len()), Some(2));
        assert_eq!((at(len - 1, 2), at(usize::MAX, 2), at(0, 16)), (None, None, None));
        let slots: Vec<u64> = mapping.u64s().take(3).collect();
        let expected: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(slots, expected);
        assert_eq!(mapping.u64s().count(), len / 8);
    }

    #[test]
    fn only_unsupported_operation_errors_switch_to_per_key() {
        for errno in [libc::EINVAL, libc::EOPNOTSUPP, libc::ENOSYS, 524] {
            assert!(batch_unsupported(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        // Real failures must surface as read errors, not silently change method.
        for errno in [libc::EPERM, libc::EFAULT, libc::ENOMEM, libc::EBADF] {
            assert!(
                !batch_unsupported(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[test]
    fn dump_entries_pair_keys_with_their_values() {
        let mut dump = MapDump::new(2, 3);
        dump.push(&[1, 0], &[1, 2, 3]);
        dump.push(&[2, 0], &[4, 5, 6]);
        let entries: Vec<_> = dump.entries().collect();
        assert_eq!(
            entries,
            [(&[1u8, 0][..], &[1u64, 2, 3][..]), (&[2, 0][..], &[4, 5, 6][..])]
        );
        assert_eq!(dump.len(), 2);
    }
}
