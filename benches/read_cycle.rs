//! The read cycle against its floor, in one run so the ratios hold on a
//! noisy machine: hash and per-CPU hash maps of 1k to 1M entries (a per-
//! thread counter's layout, `{u32 pid; u32 tid}` → u64, both labels
//! `uint`), and arrays of as many (`u32 slot` → u64, one `uint` label),
//! plain and created `BPF_F_MMAPABLE`, each read by
//!
//! - the floor: `BPF_MAP_LOOKUP_BATCH` of 4096 into buffers allocated once,
//!   the loop a C program would run (libbpf's call is the bare syscall);
//! - the exporter's map read alone ([`KernelMap`]): batches, except for the
//!   mmapable array, loaded from its mapping with no syscall at all;
//! - the exporter's full cycle: [`Reader::read`] on the default settings,
//!   read, decode, aggregate, self-metrics and the published snapshot
//!   (without a series limit: these maps are big on purpose);
//! - then the text encoding of that snapshot, which a scrape pays once.
//!
//! Every figure is a median, printed as a ratio to the floor's median (the
//! map read and the full cycle with their own median too).
//! Needs root: `sudo cargo bench --bench read_cycle`; `READ_CYCLE_SIZES=
//! 1000,100000` picks the sizes, `READ_CYCLE_MAPS=Hash,PercpuHash` the maps.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpf_exporter::config::{parse, Source};
use bpf_exporter::metrics::exposition::{encode, Format};
use bpf_exporter::reader::maps::{KernelMap, MapSource, ReadMethod};
use bpf_exporter::reader::{ReadSet, Reader, Target};
use libbpf_rs::{MapCore, MapHandle, MapType};

const BATCH: usize = 4096;

fn main() {
    let sizes: Vec<usize> = std::env::var("READ_CYCLE_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("READ_CYCLE_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000, 1_000_000]);
    let maps: Option<Vec<String>> = std::env::var("READ_CYCLE_MAPS")
        .ok()
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    let cpus = libbpf_rs::num_possible_cpus().expect("possible CPUs");
    println!("{cpus} possible CPUs; medians, ratio to the floor of the same map in the same run");
    println!(
        "{:<11} {:>9} {:>11} {:>20} {:>18} {:>14}",
        "map", "entries", "floor", "map read", "full cycle", "text encode"
    );
    for kind in [
        Kind::new("Hash", "bench_hash_total", MapType::Hash, 0),
        Kind::new("PercpuHash", "bench_percpu_total", MapType::PercpuHash, 0),
        Kind::new("Hash 1% new", "bench_hash_total", MapType::Hash, 0).churning(),
        Kind::new("Array", "bench_array_total", MapType::Array, 0),
        Kind::new(
            "Array mmap",
            "bench_mmap_total",
            MapType::Array,
            libbpf_sys::BPF_F_MMAPABLE,
        ),
    ] {
        if maps.as_ref().is_some_and(|m| !m.iter().any(|n| n == kind.name)) {
            continue;
        }
        for &entries in &sizes {
            bench(&kind, entries, cpus);
        }
    }
}

/// One kind of map benched: the name its row is printed under, and the
/// map of `bench_maps.bpf.c` with its layout (the config's metric).
struct Kind {
    name: &'static str,
    metric: &'static str,
    map_type: MapType,
    map_flags: u32,
    /// Before each round, 1 % of the keys leave the map and as many new
    /// ones come (threads that ended and started).
    churn: bool,
}

impl Kind {
    fn new(name: &'static str, metric: &'static str, map_type: MapType, map_flags: u32) -> Kind {
        Kind {
            name,
            metric,
            map_type,
            map_flags,
            churn: false,
        }
    }

    fn churning(self) -> Kind {
        Kind { churn: true, ..self }
    }

    fn is_array(&self) -> bool {
        self.map_type == MapType::Array
    }

    fn key_size(&self) -> usize {
        if self.is_array() {
            4
        } else {
            8
        }
    }
}

fn bench(kind: &Kind, entries: usize, cpus: usize) {
    let metric = kind.metric;
    let map = filled(kind, entries, cpus);
    let config = Arc::new(config(kind));
    let id = map.info().expect("map info").info.id;
    let target = Target::of_maps(
        1,
        Arc::clone(&config),
        |_| MapHandle::from_map_id(id).ok(),
        ReadMethod::Batch,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The map is big on purpose: no series limit.
    let mut reader = Reader::default().with_series_limit(0);
    reader.swap(ReadSet {
        targets: vec![Arc::new(target)],
        ..Default::default()
    });
    let mut source =
        KernelMap::new(MapHandle::from_map_id(id).expect("map by id"), ReadMethod::Batch).expect("a u64 map");
    let expected_method = if kind.map_flags & libbpf_sys::BPF_F_MMAPABLE != 0 {
        ReadMethod::Mmap
    } else {
        ReadMethod::Batch
    };
    assert_eq!(source.method(), expected_method, "{}", kind.name);
    let mut floor = Floor::new(&map, kind.key_size(), entries, cpus);

    let rounds = if entries >= 1_000_000 { 5 } else { 9 };
    let (mut t_floor, mut t_read, mut t_cycle, mut t_encode) = (vec![], vec![], vec![], vec![]);
    // Warm-up: the first cycle decodes every key, later ones are steady.
    let mut snapshot = reader.read();
    // The keys in the map, for a churning one: ids first..first + entries.
    let mut first = 0;
    for _ in 0..rounds {
        if kind.churn {
            let moved = entries / 100;
            replace_keys(&map, first..first + moved, first + entries);
            first += moved;
        }
        t_floor.push(timed(|| assert_eq!(floor.read(), entries)));
        t_read.push(timed(|| {
            assert_eq!(source.read().expect("map read").len(), entries)
        }));
        t_cycle.push(timed(|| snapshot = reader.read()));
        t_encode.push(timed(|| {
            std::hint::black_box(encode(&snapshot.families, Format::Text004));
        }));
    }
    let series: usize = snapshot
        .families
        .iter()
        .filter(|f| f.name == format!("ebpf_{metric}"))
        .map(|f| f.samples.len())
        .sum();
    assert_eq!(series, entries, "one series per key");
    let base = median(&mut t_floor);
    let ratio = |t: &mut Vec<Duration>| {
        let r = median(t).as_secs_f64() / base.as_secs_f64();
        // A read with no syscall is a hundredth of the floor: keep its digits.
        if r < 0.1 {
            format!("{r:.4}x")
        } else {
            format!("{r:.2}x")
        }
    };
    println!(
        "{:<11} {:>9} {:>11} {:>20} {:>18} {:>14}",
        kind.name,
        entries,
        format!("{base:.1?}"),
        format!("{} ({:.1?})", ratio(&mut t_read), median(&mut t_read)),
        format!("{} ({:.0?})", ratio(&mut t_cycle), median(&mut t_cycle)),
        ratio(&mut t_encode),
    );
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A config for the map of `kind`: per thread for a hash, per slot for an
/// array.
fn config(kind: &Kind) -> bpf_exporter::config::Config {
    let label = |name: &str| {
        format!("        - name: {name}\n          size: 4\n          decoders: [{{name: uint}}]\n")
    };
    let labels = if kind.is_array() {
        label("slot")
    } else {
        label("pid") + &label("tid")
    };
    let text = format!(
        "metrics:\n  counters:\n    - name: {}\n      help: Calls.\n      labels:\n{labels}",
        kind.metric
    );
    let source = Source {
        name: "bench_maps".into(),
        origin: "benches/read_cycle.rs".into(),
        text,
        ..Default::default()
    };
    parse(&source, "ebpf_").unwrap_or_else(|e| panic!("{e}"))
}

/// A map of `entries` keys, value = key index (on every CPU of a per-CPU
/// map): for a hash, sixteen threads per process; for an array, every slot.
fn filled(kind: &Kind, entries: usize, cpus: usize) -> MapHandle {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: kind.map_flags,
        ..Default::default()
    };
    let map_type = kind.map_type;
    let map = MapHandle::create(
        map_type,
        Some("bench"),
        kind.key_size() as u32,
        8,
        entries as u32,
        &opts,
    )
    .expect("creating a BPF map (run as root)");
    let per_entry = if map_type == MapType::PercpuHash { cpus } else { 1 };
    let keys: Vec<u8> = if kind.is_array() {
        (0..entries as u32).flat_map(u32::to_le_bytes).collect()
    } else {
        thread_keys(0..entries)
    };
    let values: Vec<u64> = (0..entries as u64)
        .flat_map(|i| std::iter::repeat_n(i, per_entry))
        .collect();
    let mut count = entries as u32;
    let batch = batch_opts();
    // SAFETY: `keys` and `values` hold `count` keys and values of this map's sizes
    // (libbpf-rs's update_batch refuses per-CPU maps; the call does not).
    let rc = unsafe {
        libbpf_sys::bpf_map_update_batch(
            map.as_fd().as_raw_fd(),
            keys.as_ptr().cast(),
            values.as_ptr().cast(),
            &mut count,
            &batch,
        )
    };
    assert_eq!((rc, count as usize), (0, entries), "filling the map");
    map
}

/// The `{u32 pid; u32 tid}` keys of threads `ids`, sixteen per process.
fn thread_keys(ids: std::ops::Range<usize>) -> Vec<u8> {
    ids.flat_map(|i| {
        let i = i as u32;
        [(1000 + i / 16).to_le_bytes(), i.to_le_bytes()].concat()
    })
    .collect()
}

/// Deletes the threads `gone` from a hash map and adds as many from
/// `from` on, each with its id as value.
fn replace_keys(map: &MapHandle, gone: std::ops::Range<usize>, from: usize) {
    let fd = map.as_fd().as_raw_fd();
    let n = gone.len();
    let old = thread_keys(gone);
    let new = thread_keys(from..from + n);
    let values: Vec<u64> = (from as u64..(from + n) as u64).collect();
    let batch = batch_opts();
    let (mut deleted, mut added) = (n as u32, n as u32);
    // SAFETY: each buffer holds `n` keys or values of this map's sizes.
    let (rc_delete, rc_update) = unsafe {
        (
            libbpf_sys::bpf_map_delete_batch(fd, old.as_ptr().cast(), &mut deleted, &batch),
            libbpf_sys::bpf_map_update_batch(
                fd,
                new.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut added,
                &batch,
            ),
        )
    };
    assert_eq!(
        (rc_delete, rc_update, deleted, added),
        (0, 0, n as u32, n as u32),
        "churning the map"
    );
}

fn batch_opts() -> libbpf_sys::bpf_map_batch_opts {
    libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    }
}

/// The floor: batches of 4096 into buffers that hold the whole map,
/// allocated once.
struct Floor {
    fd: i32,
    key_size: usize,
    cpus: usize,
    keys: Vec<u8>,
    values: Vec<u64>,
}

impl Floor {
    fn new(map: &MapHandle, key_size: usize, entries: usize, cpus: usize) -> Floor {
        let cpus = if map.map_type() == MapType::PercpuHash {
            cpus
        } else {
            1
        };
        Floor {
            fd: map.as_fd().as_raw_fd(),
            key_size,
            cpus,
            keys: vec![0; (entries + BATCH) * key_size],
            values: vec![0; (entries + BATCH) * cpus],
        }
    }

    /// Entries read.
    fn read(&mut self) -> usize {
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut total = 0usize;
        let mut first = true;
        loop {
            let mut count = BATCH as u32;
            let opts = batch_opts();
            // SAFETY: both buffers have room for BATCH more entries past `total`.
            let rc = unsafe {
                libbpf_sys::bpf_map_lookup_batch(
                    self.fd,
                    if first {
                        std::ptr::null_mut()
                    } else {
                        (&raw mut token_in).cast()
                    },
                    (&raw mut token_out).cast(),
                    self.keys[total * self.key_size..].as_mut_ptr().cast(),
                    self.values[total * self.cpus..].as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            total += count as usize;
            if rc == -libc::ENOENT {
                return total;
            }
            assert_eq!(rc, 0, "batch lookup");
            token_in = token_out;
            first = false;
        }
    }
}
