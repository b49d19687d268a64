//! `ksym`: a kernel address → the name of the kernel symbol it falls in,
//! from `/proc/kallsyms`, e.g. the `PT_REGS_IP` of a kprobe →
//! `do_sys_openat2`. Also the symbol table `kstack` shares.
//!
//! The input is the key bytes themselves (no `uint` before it): a `u64` in
//! host byte order. Only the first 8 bytes are read, as ebpf_exporter does,
//! so a label size that includes padding works; fewer is an error.
//!
//! An address resolves to the closest symbol at or below it, as
//! ebpf_exporter's kallsyms decoder does, so an address inside a function
//! (a return address, an IP off by a few bytes) still names the function.
//! Module and BPF symbols keep the tab and `[module]` kallsyms prints after
//! them (`bpf_prog_…_name\t[bpf]`), again as ebpf_exporter exports them,
//! so dashboards carry over. Several names at one address resolve to the
//! first listed. An address below every symbol becomes
//! `unknown_addr:0x<hex>`, exactly as ebpf_exporter prints it.
//!
//! Without privilege (or with `kptr_restrict`) kallsyms lists every address
//! as 0; such entries are left out, so nothing resolves rather than to a
//! wrong name. The address is then exported as `unknown_addr:hidden`, not
//! as its hex: the kernel hides its addresses to keep its layout (KASLR)
//! secret, and `/metrics` is served to whoever may scrape. A warning, once,
//! says so and what to grant.
//!
//! The table (over 100k symbols) is read once for the whole process, on
//! first use, and shared by every `ksym` and `kstack` label. Modules and BPF
//! programs come and go, so it is read again when a lookup misses, if the
//! table is at least 10 s old (reading it costs tens of milliseconds, and a
//! key that never resolves must not pay that on every map read), and
//! before any lookup once it is 5 minutes old, since a newly loaded
//! module's addresses would otherwise fall in an old neighbour without a
//! miss. A file that cannot be read is an error until a read succeeds;
//! after that a failed re-read keeps the old table.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::{DecodeError, Decoder, DecoderOptions};

const KALLSYMS: &str = "/proc/kallsyms";

/// The table every `ksym` and `kstack` decoder of the process uses.
pub(super) static SHARED: LazyLock<Kallsyms> =
    LazyLock::new(|| Kallsyms::new(|| std::fs::read(KALLSYMS), Refresh::DEFAULT));

#[derive(Debug)]
struct Ksym {
    symbols: &'static Kallsyms,
}

pub(super) fn build(options: &DecoderOptions) -> Result<Box<dyn Decoder>, String> {
    options.only("ksym", &[])?;
    Ok(Box::new(Ksym { symbols: &SHARED }))
}

impl Decoder for Ksym {
    fn decode(&self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let Some(address) = input
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
        else {
            return Err(DecodeError::Invalid(format!(
                "ksym decoder: cannot decode {} bytes, expected an 8-byte kernel address",
                input.len()
            )));
        };
        let name = self
            .symbols
            .resolve(&[address])
            .map_err(|e| DecodeError::Invalid(format!("ksym decoder: {e}")))?
            .pop()
            .flatten();
        Ok(name.unwrap_or_else(|| {
            if self.symbols.hidden() {
                HIDDEN.as_bytes().to_vec()
            } else {
                format!("unknown_addr:0x{address:x}").into_bytes()
            }
        }))
    }

    /// Modules and BPF programs load and unload.
    fn answer_can_change(&self) -> bool {
        true
    }
}

/// The label of an address that kallsyms hides from the exporter.
const HIDDEN: &str = "unknown_addr:hidden";

/// Whether `/proc/kallsyms`, opened now, shows this thread real
/// addresses: the kernel decides at open from the opener's capabilities.
pub fn shows_addresses() -> bool {
    std::fs::read(KALLSYMS).is_ok_and(|text| {
        let table = Table::parse(&text);
        !table.is_empty()
    })
}

/// The address of each of `names` in `/proc/kallsyms`, read now: `None`
/// for a name it does not list, `Some(0)` for one whose address it hides.
/// For ebpf_exporter's `kaddrs`, which name symbols rather than addresses.
pub fn addresses_of(names: &[&str]) -> io::Result<Vec<Option<u64>>> {
    let text = std::fs::read(KALLSYMS)?;
    let mut found: Vec<Option<u64>> = vec![None; names.len()];
    for line in text.split(|&b| b == b'\n') {
        let mut fields = line.splitn(3, |&b| b == b' ');
        let (Some(address), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // A module symbol is `name\t[module]`.
        let name = name.split(|&b| b == b'\t').next().unwrap_or(name);
        for (slot, wanted) in found.iter_mut().zip(names) {
            if slot.is_none() && name == wanted.as_bytes() {
                *slot = std::str::from_utf8(address)
                    .ok()
                    .and_then(|a| u64::from_str_radix(a, 16).ok());
            }
        }
    }
    Ok(found)
}

/// When the table is read again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refresh {
    /// After a lookup misses, if the table is at least this old.
    pub on_miss_after: Duration,
    /// Before any lookup, if the table is at least this old.
    pub after: Duration,
}

impl Refresh {
    /// See the module doc.
    pub const DEFAULT: Refresh = Refresh {
        on_miss_after: Duration::from_secs(10),
        after: Duration::from_secs(300),
    };
}

/// Kernel symbols by address, read from kallsyms text.
pub(super) struct Kallsyms {
    /// Returns the text of `/proc/kallsyms`; a fixed text in tests.
    read: fn() -> io::Result<Vec<u8>>,
    refresh: Refresh,
    state: Mutex<State>,
    /// Whether the warning about hidden addresses was logged.
    warned: AtomicBool,
}

impl std::fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kallsyms").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    table: Table,
    /// When the file was last read, successfully or not.
    read_at: Option<Instant>,
    /// Why the last read failed, while no read has succeeded.
    error: Option<String>,
}

impl Kallsyms {
    pub(super) fn new(read: fn() -> io::Result<Vec<u8>>, refresh: Refresh) -> Self {
        Kallsyms {
            read,
            refresh,
            state: Mutex::new(State::default()),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether the table was read but every address in it was 0, which is
    /// how the kernel hides them; warns the first time.
    fn hidden(&self) -> bool {
        let hidden = self.state.lock().unwrap_or_else(|e| e.into_inner()).table.hidden;
        if hidden && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{KALLSYMS} hides kernel addresses from the exporter (it lacks CAP_SYSLOG, or \
                 kernel.kptr_restrict is 2): ksym labels read {HIDDEN:?} instead of symbol names, and raw \
                 addresses are not exported since they would reveal the kernel's layout (KASLR); grant \
                 CAP_SYSLOG (systemd: AmbientCapabilities=) to resolve them"
            );
        }
        hidden
    }

    /// The name of the symbol each address falls in, in order; `None` for
    /// an address below every symbol.
    pub(super) fn resolve(&self, addresses: &[u64]) -> Result<Vec<Option<Vec<u8>>>, String> {
        // A poisoned lock only means another decode panicked; the table is
        // still whole.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let age = state.read_at.map(|at| at.elapsed());
        let mut fresh = false;
        if age.is_none_or(|age| age >= self.refresh.after) {
            self.reread(&mut state);
            fresh = true;
        }
        let lookup = |table: &Table| -> Vec<Option<Vec<u8>>> {
            addresses
                .iter()
                .map(|&a| table.lookup(a).map(<[u8]>::to_vec))
                .collect()
        };
        let mut names = lookup(&state.table);
        if !fresh
            && names.iter().any(Option::is_none)
            && age.is_some_and(|age| age >= self.refresh.on_miss_after)
        {
            self.reread(&mut state);
            names = lookup(&state.table);
        }
        match &state.error {
            Some(error) => Err(error.clone()),
            None => Ok(names),
        }
    }

    fn reread(&self, state: &mut State) {
        state.read_at = Some(Instant::now());
        match (self.read)() {
            Ok(text) => {
                state.table = Table::parse(&text);
                state.error = None;
            }
            Err(e) if state.table.is_empty() => state.error = Some(format!("reading {KALLSYMS}: {e}")),
            Err(e) => tracing::warn!("reading {KALLSYMS} again failed, keeping the old symbols: {e}"),
        }
    }
}

/// Symbols sorted by address, one per address, their names in one buffer.
#[derive(Default)]
struct Table {
    /// (address, name start, name length) into `names`.
    symbols: Vec<(u64, u32, u32)>,
    names: Vec<u8>,
    /// Symbols were listed, all at address 0: the kernel hides them.
    hidden: bool,
}

impl Table {
    /// Lines are `<hex address> <type> <name>[\t[<module>]]`; the name is
    /// everything after the second space. Other lines, and address 0, are
    /// skipped.
    fn parse(text: &[u8]) -> Table {
        let mut table = Table::default();
        let mut zeros = 0usize;
        for line in text.split(|&b| b == b'\n') {
            let mut fields = line.splitn(3, |&b| b == b' ');
            let (Some(address), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some(address) = std::str::from_utf8(address)
                .ok()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
            else {
                continue;
            };
            if address == 0 {
                zeros += 1;
                continue;
            }
            let (Ok(start), Ok(len)) = (u32::try_from(table.names.len()), u32::try_from(name.len())) else {
                break;
            };
            table.names.extend_from_slice(name);
            table.symbols.push((address, start, len));
        }
        // Stable, so the first listed of several names at one address is
        // the one kept.
        table.symbols.sort_by_key(|&(address, _, _)| address);
        table.symbols.dedup_by_key(|&mut (address, _, _)| address);
        table.hidden = table.symbols.is_empty() && zeros > 0;
        table
    }

    fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The name of the closest symbol at or below `address`.
    fn lookup(&self, address: u64) -> Option<&[u8]> {
        let after = self.symbols.partition_point(|&(a, _, _)| a <= address);
        let &(_, start, len) = self.symbols.get(after.checked_sub(1)?)?;
        self.names.get(start as usize..start as usize + len as usize)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A piece of a real arm64 kallsyms, from ebpf_exporter's tests, with
    /// x86 and module lines, an address 0 and junk added.
    pub(in super::super) const KALLSYMS_TEXT: &str = "\
ffffffeb19a8a320 t mmdrop_async_fn
ffffffeb19a8a358 t mm_release
ffffffeb19a8a480 t __pidfd_prepare
ffffffeb19a8a5c0 t __mmput
ffffffeb19a8a780 T mmput
--
ffffffeb19cadfc0 T mark_page_accessed
ffffffeb19cae008 T set_page_writeback
ffffffeb19d90830 T pipe_lock
ffffffeb19d90870 T pipe_unlock
ffffffeb19d908b0 T generic_pipe_buf_get
ffffffc08071046c t bpf_prog_ab4bc4523b7fe6b4\t[bpf]
ffffffc0801cedf4 t bpf_prog_9a4f2895a09f572a_mark_page_accessed\t[bpf]
ffffffc08012d000 t bpf_trampoline_6442507883\t[bpf]
ffffffff8b704104 T srso_alias_safe_ret
ffffffff8b70410b T srso_alias_return_thunk
ffffffff8b800000 T _etext
ffffffff8b800000 d __func__.0
ffffffff8b800000 D __start_rodata
ffffffff8b800018 d __func__.1
0000000000000000 A hidden_or_percpu
not-hex T junk
ffffffff8b9
";

    pub(in super::super) fn fixed() -> io::Result<Vec<u8>> {
        Ok(KALLSYMS_TEXT.as_bytes().to_vec())
    }

    /// Reads again on every miss, never because of age.
    pub(in super::super) const ON_EVERY_MISS: Refresh = Refresh {
        on_miss_after: Duration::ZERO,
        after: Duration::MAX,
    };

    pub(in super::super) fn leak(read: fn() -> io::Result<Vec<u8>>, refresh: Refresh) -> &'static Kallsyms {
        Box::leak(Box::new(Kallsyms::new(read, refresh)))
    }

    fn address(a: u64) -> Vec<u8> {
        a.to_ne_bytes().to_vec()
    }

    #[test]
    fn decodes_table() {
        let cases: &[(&str, Vec<u8>, Result<&str, &str>)] = &[
            // ebpf_exporter's ksym cases (its table holds only the pipe lines).
            ("pipe_lock", address(0xffffffeb19d90830), Ok("pipe_lock")),
            ("pipe_unlock", address(0xffffffeb19d90870), Ok("pipe_unlock")),
            (
                "inside pipe_unlock",
                address(0xffffffeb19d90878),
                Ok("pipe_unlock"),
            ),
            // Its kallsyms lookup cases.
            ("inside mm_release", address(0xffffffeb19a8a478), Ok("mm_release")),
            (
                "__pidfd_prepare",
                address(0xffffffeb19a8a480),
                Ok("__pidfd_prepare"),
            ),
            (
                "inside __pidfd_prepare",
                address(0xffffffeb19a8a482),
                Ok("__pidfd_prepare"),
            ),
            (
                "mark_page_accessed",
                address(0xffffffeb19cadfc0),
                Ok("mark_page_accessed"),
            ),
            (
                "inside srso_alias_safe_ret",
                address(0xffffffff8b704109),
                Ok("srso_alias_safe_ret"),
            ),
            // More.
            ("first symbol", address(0xffffffeb19a8a320), Ok("mmdrop_async_fn")),
            (
                "module symbol keeps its module",
                address(0xffffffc0801cee9c),
                Ok("bpf_prog_9a4f2895a09f572a_mark_page_accessed\t[bpf]"),
            ),
            (
                "first of names at one address",
                address(0xffffffff8b800000),
                Ok("_etext"),
            ),
            ("above every symbol", address(u64::MAX), Ok("__func__.1")),
            (
                "below every symbol",
                address(0xffffffc08012cfff),
                Ok("unknown_addr:0xffffffc08012cfff"),
            ),
            ("zero", address(0), Ok("unknown_addr:0x0")),
            ("small", address(0x1000), Ok("unknown_addr:0x1000")),
            (
                "padding after the address is ignored",
                [address(0xffffffeb19d90830), vec![1; 8]].concat(),
                Ok("pipe_lock"),
            ),
            (
                "too short",
                vec![0x30, 0x08, 0xd9, 0x19],
                Err("ksym decoder: cannot decode 4 bytes, expected an 8-byte kernel address"),
            ),
            (
                "empty",
                vec![],
                Err("ksym decoder: cannot decode 0 bytes, expected an 8-byte kernel address"),
            ),
        ];
        let decoder = Ksym {
            symbols: leak(fixed, ON_EVERY_MISS),
        };
        let cases: Vec<_> = cases.iter().map(|(n, i, w)| (*n, i.as_slice(), *w)).collect();
        super::super::check_cases(&decoder, &cases);
        assert!(decoder.answer_can_change());
    }

    #[test]
    fn parse_keeps_one_name_per_address_in_order() {
        let table = Table::parse(KALLSYMS_TEXT.as_bytes());
        assert_eq!(table.symbols.len(), 17);
        assert!(table.symbols.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            table.lookup(0xffffffc08012d000),
            Some(&b"bpf_trampoline_6442507883\t[bpf]"[..])
        );
        assert!(Table::parse(b"").is_empty());
        assert!(Table::parse(b"0000000000000000 T hidden\n0000000000000000 T also\n").is_empty());
    }

    #[test]
    fn hidden_kallsyms_exports_a_placeholder_not_the_raw_address() {
        fn hidden() -> io::Result<Vec<u8>> {
            Ok(b"0000000000000000 T _stext\n0000000000000000 t do_sys_openat2\n".to_vec())
        }
        let decoder = Ksym {
            symbols: leak(hidden, ON_EVERY_MISS),
        };
        for address in [0xffffffff8b704104u64, 0xffffffeb19d90830, 1] {
            assert_eq!(
                decoder.decode(&address.to_ne_bytes()),
                Ok(b"unknown_addr:hidden".to_vec()),
                "{address:x}"
            );
        }
        // A kallsyms that shows addresses still exports an unresolvable one
        // as ebpf_exporter does.
        let visible = Ksym {
            symbols: leak(fixed, ON_EVERY_MISS),
        };
        assert_eq!(visible.decode(&address(1)), Ok(b"unknown_addr:0x1".to_vec()));
        assert!(!Table::parse(b"").hidden && !Table::parse(KALLSYMS_TEXT.as_bytes()).hidden);
    }

    #[test]
    fn a_symbol_that_appears_later_is_found_on_a_miss() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static LOADED: AtomicBool = AtomicBool::new(false);
        fn later() -> io::Result<Vec<u8>> {
            let mut text = KALLSYMS_TEXT.as_bytes().to_vec();
            if LOADED.load(Ordering::SeqCst) {
                text.extend_from_slice(b"0000000000000010 t early\t[mod]\n");
            }
            Ok(text)
        }
        let symbols = leak(later, ON_EVERY_MISS);
        assert_eq!(symbols.resolve(&[0x12]), Ok(vec![None]));
        LOADED.store(true, Ordering::SeqCst);
        assert_eq!(symbols.resolve(&[0x12]), Ok(vec![Some(b"early\t[mod]".to_vec())]));
    }

    #[test]
    fn a_miss_rereads_only_when_the_table_is_old_enough() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static READS: AtomicUsize = AtomicUsize::new(0);
        fn counted() -> io::Result<Vec<u8>> {
            READS.fetch_add(1, Ordering::SeqCst);
            fixed()
        }
        let symbols = leak(
            counted,
            Refresh {
                on_miss_after: Duration::from_secs(3600),
                after: Duration::MAX,
            },
        );
        for _ in 0..3 {
            assert_eq!(symbols.resolve(&[0x12, 0xffffffeb19d90830]).unwrap()[0], None);
        }
        assert_eq!(READS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_old_table_is_read_again_before_a_lookup() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static READS: AtomicUsize = AtomicUsize::new(0);
        fn counted() -> io::Result<Vec<u8>> {
            READS.fetch_add(1, Ordering::SeqCst);
            fixed()
        }
        let symbols = leak(
            counted,
            Refresh {
                on_miss_after: Duration::MAX,
                after: Duration::ZERO,
            },
        );
        for _ in 0..3 {
            assert!(symbols.resolve(&[0xffffffeb19d90830]).unwrap()[0].is_some());
        }
        assert_eq!(READS.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn unreadable_kallsyms_is_an_error_until_a_read_succeeds() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static READABLE: AtomicBool = AtomicBool::new(false);
        fn flaky() -> io::Result<Vec<u8>> {
            if READABLE.load(Ordering::SeqCst) {
                fixed()
            } else {
                Err(io::Error::from(io::ErrorKind::PermissionDenied))
            }
        }
        let decoder = Ksym {
            symbols: leak(flaky, ON_EVERY_MISS),
        };
        let pipe_lock = address(0xffffffeb19d90830);
        assert_eq!(
            decoder.decode(&pipe_lock),
            Err(DecodeError::Invalid(
                "ksym decoder: reading /proc/kallsyms: permission denied".into()
            ))
        );
        READABLE.store(true, Ordering::SeqCst);
        assert_eq!(decoder.decode(&pipe_lock), Ok(b"pipe_lock".to_vec()));
        // A failed re-read keeps the symbols already read.
        READABLE.store(false, Ordering::SeqCst);
        assert_eq!(decoder.decode(&address(1)), Ok(b"unknown_addr:0x1".to_vec()));
        assert_eq!(decoder.decode(&pipe_lock), Ok(b"pipe_lock".to_vec()));
    }

    #[test]
    fn reads_this_host() {
        // Every function symbol of this kernel resolves to itself, when
        // addresses are visible (root, kptr_restrict allowing).
        let Ok(text) = std::fs::read(KALLSYMS) else {
            return;
        };
        let table = Table::parse(&text);
        if table.is_empty() {
            return;
        }
        let decoder = build(&DecoderOptions::default()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in String::from_utf8_lossy(&text).lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(address), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let address = u64::from_str_radix(address, 16).unwrap();
            // Only the first name listed at an address is expected. BPF
            // programs' symbols ([bpf]) come and go with programs other
            // processes load, between this read and the decoder's.
            if seen.insert(address) && matches!(kind, "T" | "t") && !name.ends_with("[bpf]") {
                assert_eq!(
                    decoder.decode(&address.to_ne_bytes()),
                    Ok(name.as_bytes().to_vec()),
                    "{line}"
                );
            }
        }
    }
}
