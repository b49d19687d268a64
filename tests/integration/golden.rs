//! Golden files: real configs from `configs/`, fixed map contents, and the
//! exact text each exposition dialect makes of them, in `tests/golden/`
//! (`<config>.prom` for text 0.0.4, `<config>.om` for OpenMetrics). No
//! kernel needed: the dumps stand in for the maps, and decoding
//! (`rows::family`) and encoding run as in the exporter.
//!
//! Unit tests check each step on its own; these hold the whole path from map
//! bytes to scraped text, so that a change anywhere in it (a decoder, bucket
//! folding, float spelling, label order) shows up as a diff of a file a
//! person can read. After an intended change, regenerate the files with
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --locked --test integration golden
//! ```
//!
//! and review the diff by hand before committing it: the files are the
//! expectation, not a record of whatever the code printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpf_exporter::config::{self, Source};
use bpf_exporter::metrics::exposition::{encode, Format};
use bpf_exporter::metrics::Family;
use bpf_exporter::reader::cache::LabelCache;
use bpf_exporter::reader::maps::MapDump;
use bpf_exporter::reader::rows::{self, RowStats};

/// `configs/<name>.yaml`, validated as the exporter would with its default
/// prefix; each metric is read from `dump(metric name)`. Returns the
/// families in config order with the rows each one left out.
fn read(name: &str, dump: impl Fn(&str) -> MapDump) -> Vec<(Arc<Family>, RowStats)> {
    let path = format!("{}/configs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let source = Source {
        name: name.to_string(),
        origin: path,
        text,
        ..Default::default()
    };
    let config = config::parse(&source, "ebpf_").unwrap_or_else(|e| panic!("{e}"));
    let mut cache = LabelCache::new(1024, Duration::from_secs(60));
    config
        .metrics
        .iter()
        .map(|spec| rows::MetricRows::new(0).family(spec, &dump(&spec.name), &mut cache, Instant::now()))
        .collect()
}

/// Compares both encodings of `families` with `tests/golden/<name>.*`, or
/// writes them there when `UPDATE_GOLDEN` is set.
fn check(name: &str, families: &[Arc<Family>]) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (format, extension) in [(Format::Text004, "prom"), (Format::OpenMetrics, "om")] {
        let path: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "golden",
            &format!("{name}.{extension}"),
        ]
        .iter()
        .collect();
        let got = encode(families, format);
        if update {
            std::fs::write(&path, &got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; create it with UPDATE_GOLDEN=1 and review it",
                path.display()
            )
        });
        for (i, (got, want)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(got, want, "{}:{}", path.display(), i + 1);
        }
        assert_eq!(got, want, "{}: lines missing or extra", path.display());
    }
}

/// `syscalls.yaml`: a hash of u64 syscall numbers, named by the `syscall`
/// decoder. The names are x86_64's (other architectures number syscalls
/// differently), hence the `cfg`.
#[cfg(target_arch = "x86_64")]
#[test]
fn golden_syscalls() {
    let read_syscalls = |map: &str| {
        assert_eq!(map, "ebpf_syscalls_total");
        let mut dump = MapDump::new(8, 1);
        for (number, count) in [
            (0u64, 1500), // read
            (1, 730),     // write
            (3, 12),      // close
            (9, 0),       // mmap: in the map, never incremented
            (59, 2),      // execve
            (257, 345),   // openat
            (334, 1),     // rseq
            (500, 3),     // no syscall on x86_64
            (u64::MAX, 1),
        ] {
            dump.push(&number.to_ne_bytes(), &[count]);
        }
        dump
    };
    let families = read("syscalls", read_syscalls);
    assert!(families.iter().all(|(_, stats)| *stats == RowStats::default()));
    let families: Vec<Arc<Family>> = families.into_iter().map(|(f, _)| f).collect();
    check("syscalls", &families);
}

/// `tcp_connect_latency.yaml`: a counter read from a global variable, and a
/// histogram keyed by `{u32 family, u32 bucket}` with buckets 11..=37 of
/// 2^i ns, the sum at key 38 and overflow above. The rows of one family add
/// up to one histogram, keys below the first bucket into that bucket.
#[test]
fn golden_tcp_connect_latency() {
    let read_maps = |metric: &str| match metric {
        "ebpf_tcp_connect_failures_total" => {
            // A global variable reads as one entry at key 0.
            let mut dump = MapDump::new(4, 1);
            dump.push(&0u32.to_ne_bytes(), &[17]);
            dump
        }
        "ebpf_tcp_connect_latency_seconds" => {
            let mut dump = MapDump::new(8, 1);
            for (family, bucket, count) in [
                // ipv4: buckets 0 and 10 are below the first exported one
                // and count in it with bucket 11.
                (2u32, 0u32, 1u64),
                (2, 10, 2),
                (2, 11, 3),
                (2, 12, 4),
                (2, 20, 5),
                (2, 37, 1),
                (2, 38, 123_456_789),
                (2, 39, 2),
                // ipv6
                (10, 15, 7),
                (10, 38, 210_000),
                // AF_UNIX: not in the static_map, so `unknown:1`.
                (1, 12, 9),
            ] {
                let mut key = family.to_ne_bytes().to_vec();
                key.extend_from_slice(&bucket.to_ne_bytes());
                dump.push(&key, &[count]);
            }
            dump
        }
        other => panic!("no dump for {other}"),
    };
    let families = read("tcp_connect_latency", read_maps);
    assert!(families.iter().all(|(_, stats)| *stats == RowStats::default()));
    let families: Vec<Arc<Family>> = families.into_iter().map(|(f, _)| f).collect();
    check("tcp_connect_latency", &families);
}
