//! Whole-map read cost: `BPF_MAP_LOOKUP_BATCH` against per-key iteration on
//! a full 100k-entry hash map (and its per-CPU twin), in one run so the
//! ratio holds on a noisy machine. Needs root: `sudo cargo bench`.

use std::time::{Duration, Instant};

use bpf_exporter::reader::maps::{KernelMap, MapSource, ReadMethod};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapHandle, MapType};

const ENTRIES: u32 = 100_000;
const ROUNDS: usize = 7;

fn main() {
    for map_type in [MapType::Hash, MapType::PercpuHash] {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let map = MapHandle::create(map_type, Some("bench"), 8, 8, ENTRIES, &opts)
            .expect("creating a BPF map (run as root)");
        let cpus = libbpf_rs::num_possible_cpus().unwrap();
        let keys: Vec<u8> = (0..u64::from(ENTRIES)).flat_map(u64::to_le_bytes).collect();
        let values: Vec<u8> = (0..u64::from(ENTRIES) * if map_type.is_percpu() { cpus as u64 } else { 1 })
            .flat_map(u64::to_le_bytes)
            .collect();
        // libbpf-rs's update_batch refuses per-CPU maps; the C call does not.
        let mut count = ENTRIES;
        let batch_opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `keys` and `values` hold `count` keys and values of this map's sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                &batch_opts,
            )
        };
        assert_eq!((rc, count), (0, ENTRIES), "filling the map");

        let mut medians = Vec::new();
        for method in [ReadMethod::Batch, ReadMethod::PerKey] {
            let handle = MapHandle::from_map_id(map.info().unwrap().info.id).unwrap();
            let mut source = KernelMap::new(handle, method).unwrap();
            let mut times: Vec<Duration> = (0..ROUNDS)
                .map(|_| {
                    let t = Instant::now();
                    let dump = source.read().unwrap();
                    let elapsed = t.elapsed();
                    assert_eq!(dump.len(), ENTRIES as usize);
                    elapsed
                })
                .collect();
            times.sort();
            let median = times[ROUNDS / 2];
            println!(
                "{map_type:?} {ENTRIES} entries, {:<8} median {median:?} (min {:?})",
                method.as_str(),
                times[0]
            );
            medians.push(median);
        }
        println!(
            "{map_type:?}: per-key / batch = {:.1}x",
            medians[1].as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
