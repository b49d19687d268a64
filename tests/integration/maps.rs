//! Whole-map reads through the kernel: batch and per-key give the same
//! entries for every supported map type, per-CPU included; an array
//! created `BPF_F_MMAPABLE` is read through its mapping, with the same
//! entries.

use std::collections::BTreeMap;

use bpf_exporter::reader::maps::{KernelMap, MapDump, MapSource, ReadMethod};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::common::bpf_available;

fn create(map_type: MapType, max_entries: u32) -> MapHandle {
    create_with(map_type, max_entries, 0)
}

fn create_with(map_type: MapType, max_entries: u32, map_flags: u32) -> MapHandle {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags,
        ..Default::default()
    };
    MapHandle::create(map_type, Some("test_map"), 4, 8, max_entries, &opts).unwrap()
}

fn fill(map: &MapHandle, entries: u64) {
    let cpus = libbpf_rs::num_possible_cpus().unwrap() as u64;
    for k in 0..entries {
        let key = (k as u32).to_le_bytes();
        if map.map_type().is_percpu() {
            let values: Vec<Vec<u8>> = (0..cpus)
                .map(|cpu| (k * 10 + cpu).to_le_bytes().to_vec())
                .collect();
            map.update_percpu(&key, &values, MapFlags::ANY).unwrap();
        } else {
            map.update(&key, &(k * 10).to_le_bytes(), MapFlags::ANY).unwrap();
        }
    }
}

fn as_map(dump: &MapDump) -> BTreeMap<u64, Vec<u64>> {
    dump.entries()
        .map(|(k, v)| (u64::from(u32::from_le_bytes(k.try_into().unwrap())), v.to_vec()))
        .collect()
}

fn read(map: &MapHandle, method: ReadMethod) -> (MapDump, ReadMethod) {
    let handle = MapHandle::from_map_id(map.info().unwrap().info.id).unwrap();
    let mut source = KernelMap::new(handle, method).unwrap();
    let dump = source.read().unwrap();
    (dump, source.method())
}

#[test]
fn batch_and_per_key_reads_agree_for_every_map_type() {
    if !bpf_available() {
        return;
    }
    let cpus = libbpf_rs::num_possible_cpus().unwrap();
    for map_type in [
        MapType::Hash,
        MapType::Array,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::LruHash,
        MapType::LruPercpuHash,
    ] {
        let map = create(map_type, 3000);
        fill(&map, 2500);
        let (batch, method) = read(&map, ReadMethod::Batch);
        assert_eq!(
            method,
            ReadMethod::Batch,
            "{map_type:?}: this kernel has batch ops"
        );
        let (per_key, _) = read(&map, ReadMethod::PerKey);
        let expected_len = if matches!(map_type, MapType::Array | MapType::PercpuArray) {
            3000
        } else {
            2500
        };
        assert_eq!(batch.len(), expected_len, "{map_type:?}");
        assert_eq!(as_map(&batch), as_map(&per_key), "{map_type:?}");
        let values_per_entry = if map_type.is_percpu() { cpus } else { 1 };
        assert_eq!(batch.values_per_entry, values_per_entry);
        let entries = as_map(&batch);
        assert_eq!(entries[&7][0], 70, "{map_type:?}");
        if map_type.is_percpu() {
            assert_eq!(entries[&7], (0..cpus as u64).map(|c| 70 + c).collect::<Vec<_>>());
        }
    }
}

#[test]
fn mmapable_arrays_read_through_their_mapping_and_plain_arrays_in_batches() {
    if !bpf_available() {
        return;
    }
    let plain = create(MapType::Array, 3000);
    fill(&plain, 2500);
    let mapped = create_with(MapType::Array, 3000, libbpf_sys::BPF_F_MMAPABLE);
    fill(&mapped, 2500);
    for method in [ReadMethod::Batch, ReadMethod::PerKey] {
        let (dump, how) = read(&mapped, method);
        assert_eq!(how, ReadMethod::Mmap, "asked for {method:?}");
        assert_eq!(as_map(&dump), as_map(&read(&plain, method).0), "{method:?}");
        assert_eq!(dump.len(), 3000);
    }
    assert_eq!(read(&plain, ReadMethod::Batch).1, ReadMethod::Batch);
    // A write after the mapping is made shows in the next read.
    let handle = MapHandle::from_map_id(mapped.info().unwrap().info.id).unwrap();
    let mut source = KernelMap::new(handle, ReadMethod::Batch).unwrap();
    mapped
        .update(&2999u32.to_le_bytes(), &42u64.to_le_bytes(), MapFlags::ANY)
        .unwrap();
    let entries = as_map(&source.read().unwrap());
    assert_eq!(
        (entries[&7][0], entries[&2500][0], entries[&2999][0]),
        (70, 0, 42)
    );
}

#[test]
fn batch_read_of_a_full_100k_hash_map_loses_nothing() {
    if !bpf_available() {
        return;
    }
    let map = create(MapType::Hash, 100_000);
    fill(&map, 100_000);
    let (dump, method) = read(&map, ReadMethod::Batch);
    assert_eq!(method, ReadMethod::Batch);
    let entries = as_map(&dump);
    assert_eq!(entries.len(), 100_000);
    assert!(entries.iter().all(|(k, v)| v == &[k * 10]));
}

#[test]
fn empty_maps_read_as_empty() {
    if !bpf_available() {
        return;
    }
    for method in [ReadMethod::Batch, ReadMethod::PerKey] {
        let map = create(MapType::Hash, 16);
        assert!(read(&map, method).0.is_empty());
    }
}

#[test]
fn lpm_trie_reads_return_every_entry_whichever_method_the_kernel_allows() {
    if !bpf_available() {
        return;
    }
    // Older kernels have no batch lookup for LPM tries: a batch read then
    // switches to per-key by itself; newer ones answer the batch call.
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_NO_PREALLOC,
        ..Default::default()
    };
    let map = MapHandle::create(MapType::LpmTrie, Some("test_lpm"), 8, 8, 16, &opts).unwrap();
    for (prefix, addr, value) in [
        (8u32, [10u8, 0, 0, 0], 1u64),
        (16, [10, 1, 0, 0], 2),
        (32, [10, 1, 2, 3], 3),
    ] {
        let mut key = prefix.to_le_bytes().to_vec();
        key.extend_from_slice(&addr);
        map.update(&key, &value.to_le_bytes(), MapFlags::ANY).unwrap();
    }
    for method in [ReadMethod::Batch, ReadMethod::PerKey] {
        let (dump, _) = read(&map, method);
        let mut values: Vec<u64> = dump.entries().map(|(_, v)| v[0]).collect();
        values.sort();
        assert_eq!(values, [1, 2, 3], "{method:?}");
    }
}
