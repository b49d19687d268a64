// SPDX-License-Identifier: GPL-2.0
/*
 * bench_maps: the key and value layouts of the read-cycle bench
 * (benches/read_cycle.rs), which fills maps of these layouts itself, of
 * each size it measures. Its program never runs: the bench reads BTF only.
 *
 * Maps: bench_hash_total (HASH) and bench_percpu_total (PERCPU_HASH),
 *       struct thread_key {u32 pid; u32 tid} -> u64, as a per-thread
 *       counter would be; bench_array_total (ARRAY) and bench_mmap_total
 *       (ARRAY, BPF_F_MMAPABLE), u32 slot -> u64.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct thread_key {
	u32 pid;
	u32 tid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct thread_key);
	__type(value, u64);
} bench_hash_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct thread_key);
	__type(value, u64);
} bench_percpu_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 20);
	__type(key, u32);
	__type(value, u64);
} bench_array_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1 << 20);
	__type(key, u32);
	__type(value, u64);
} bench_mmap_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int bench_count(void *ctx)
{
	struct thread_key key = {};
	u64 id = bpf_get_current_pid_tgid();
	u64 one = 1, *count;

	key.pid = id >> 32;
	key.tid = (u32)id;
	count = bpf_map_lookup_elem(&bench_hash_total, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&bench_hash_total, &key, &one, BPF_NOEXIST);
	count = bpf_map_lookup_elem(&bench_percpu_total, &key);
	if (count)
		*count += 1;
	else
		bpf_map_update_elem(&bench_percpu_total, &key, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
