// SPDX-License-Identifier: GPL-2.0
/*
 * full_map: a hash map of eight entries that the tests fill, overfill and
 * empty at will, to check that bpf_exporter_map_entries and
 * bpf_exporter_map_max_entries say how full it is and that the series of
 * deleted keys go away.
 *
 * Hooks: tracepoint raw_syscalls/sys_enter:
 *        sched_get_priority_min(FULL_MAP_BASE + n), n < FULL_MAP_KEYS, counts
 *        a call under key FULL_MAP_BASE + n; sched_get_priority_max of the
 *        same argument deletes that key. Other arguments are left alone
 *        (the other tests ask for SCHED_OTHER, 0).
 * Maps:  full_map_calls_total (HASH, 8 entries, u32 policy -> u64 calls)
 *          -> ebpf_full_map_calls_total{policy}
 *        full_map_refused_total (ARRAY, u32 0 -> u64): calls whose new key
 *          the full map refused (bpf_map_update_elem failed, E2BIG)
 *          -> ebpf_full_map_refused_total
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "priority_syscalls.h"

/* tests/integration/guards.rs repeats these. */
#define FULL_MAP_BASE 7100
#define FULL_MAP_KEYS 64
#define FULL_MAP_ENTRIES 8

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULL_MAP_ENTRIES);
	__type(key, u32);
	__type(value, u64);
} full_map_calls_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} full_map_refused_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int fill(struct trace_event_raw_sys_enter *ctx)
{
	u64 policy = ctx->args[0], one = 1, *calls;
	u32 key, slot = 0;

	if (policy < FULL_MAP_BASE || policy >= FULL_MAP_BASE + FULL_MAP_KEYS)
		return 0;
	key = policy;
	if (ctx->id == NR_PRIORITY_MAX) {
		bpf_map_delete_elem(&full_map_calls_total, &key);
		return 0;
	}
	if (ctx->id != NR_PRIORITY_MIN)
		return 0;
	calls = bpf_map_lookup_elem(&full_map_calls_total, &key);
	if (calls) {
		__sync_fetch_and_add(calls, 1);
		return 0;
	}
	if (bpf_map_update_elem(&full_map_calls_total, &key, &one, BPF_NOEXIST) < 0) {
		calls = bpf_map_lookup_elem(&full_map_refused_total, &slot);
		if (calls)
			__sync_fetch_and_add(calls, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
