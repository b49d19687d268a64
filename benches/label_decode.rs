//! Decoding cost per map key, cached against uncached: 1k and 100k map rows are
//! turned into a metric family with the label cache off, then with a warm
//! cache, in one run so the ratio holds on a noisy machine. Two label
//! chains: a cheap one (`uint` + `syscall`, a table lookup) and a costly one
//! (`string` + `regexp` allow-list + `static_map`). No kernel needed:
//! `cargo bench --bench label_decode`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bpf_exporter::config::{LabelSpec, MetricSpec, MetricType};
use bpf_exporter::decoders::{configure, decode_chain, DecoderOptions};
use bpf_exporter::reader::cache::LabelCache;
use bpf_exporter::reader::maps::MapDump;
use bpf_exporter::reader::rows::MetricRows;

const ROUNDS: usize = 7;

fn main() {
    // A map of a few thousand keys stays in the CPU caches; 100k does not.
    for keys in [1_000, 100_000] {
        bench(keys);
    }
}

fn bench(keys: usize) {
    let cheap = spec(
        8,
        vec![
            ("uint", DecoderOptions::default()),
            ("syscall", DecoderOptions::default()),
        ],
    );
    let mut numbers = MapDump::new(8, 1);
    for key in 0..keys as u64 {
        numbers.push(&key.to_le_bytes(), &[key]);
    }
    run("uint + syscall", &cheap, &numbers, keys);

    let regexps = [
        "^worker-[0-9]+$",
        "^kworker/.*",
        "^(nginx|envoy|haproxy)",
        "sql",
        "^java$",
    ];
    let static_map: BTreeMap<String, String> = (0..64)
        .map(|i| (format!("worker-{i}"), format!("pool-{}", i % 8)))
        .collect();
    let costly = spec(
        16,
        vec![
            ("string", DecoderOptions::default()),
            (
                "regexp",
                DecoderOptions {
                    regexps: Some(regexps.iter().map(|r| r.to_string()).collect()),
                    ..Default::default()
                },
            ),
            (
                "static_map",
                DecoderOptions {
                    static_map: Some(static_map),
                    allow_unknown: Some(true),
                    ..Default::default()
                },
            ),
        ],
    );
    let mut names = MapDump::new(16, 1);
    for i in 0..keys {
        let mut key = [0u8; 16];
        let name = format!("worker-{i}");
        key[..name.len()].copy_from_slice(name.as_bytes());
        names.push(&key, &[1]);
    }
    run("string + regexp + static_map", &costly, &names, keys);

    // Kernel addresses, as timer or stack programs record them; needs a
    // readable /proc/kallsyms (root), else the scenario is left out.
    let addresses: Vec<u64> = std::fs::read_to_string("/proc/kallsyms")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
        .filter(|&a| a != 0)
        .take(keys)
        .collect();
    if addresses.len() == keys {
        let mut dump = MapDump::new(8, 1);
        for address in addresses {
            dump.push(&(address + 1).to_ne_bytes(), &[1]);
        }
        run(
            "ksym",
            &spec(8, vec![("ksym", DecoderOptions::default())]),
            &dump,
            keys,
        );
    }
}

/// A counter with one label over the whole key.
fn spec(size: usize, chain: Vec<(&str, DecoderOptions)>) -> MetricSpec {
    MetricSpec {
        kind: MetricType::Counter,
        map: "bench".into(),
        global: None,
        name: "ebpf_bench_total".into(),
        help: "Bench.".into(),
        labels: vec![LabelSpec {
            name: "label".into(),
            offset: 0,
            size,
            decoders: chain
                .iter()
                .map(|(name, options)| configure(name, options).expect("decoder"))
                .collect(),
        }],
        cpu_label: None,
        events: None,
    }
}

fn run(title: &str, spec: &MetricSpec, dump: &MapDump, keys: usize) {
    // One metric read ROUNDS times: with room for every key, the first read
    // decodes them and the others find them held; with none, every read
    // decodes every key.
    let time = |size: usize| {
        let mut rows = MetricRows::new(0);
        let mut cache = LabelCache::new(size, Duration::from_secs(60));
        rows.family(spec, dump, &mut cache, Instant::now());
        let mut runs: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                let (family, _) = rows.family(spec, dump, &mut cache, Instant::now());
                let elapsed = started.elapsed();
                assert!(!family.samples.is_empty());
                elapsed
            })
            .collect();
        runs.sort();
        runs[ROUNDS / 2]
    };
    let uncached = time(0);
    let cached = time(2 * keys);
    let per_key = |d: Duration| d.as_nanos() as f64 / keys as f64;
    // The decoding step alone: the chain run on every key.
    let mut runs: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for (key, _) in dump.entries() {
                std::hint::black_box(decode_chain(&spec.labels[0].decoders, key).ok());
            }
            started.elapsed()
        })
        .collect();
    runs.sort();
    let decode = runs[ROUNDS / 2];
    println!("{title}, {keys} keys, medians of {ROUNDS}:");
    println!("  decode step: {:.0} ns/key", per_key(decode));
    println!(
        "  whole read (decode + aggregation): every key decoded {:.0} ns/key, keys held {:.0} ns/key ({:.1}x)",
        per_key(uncached),
        per_key(cached),
        per_key(uncached) / per_key(cached),
    );
}
