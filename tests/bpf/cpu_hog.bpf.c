// SPDX-License-Identifier: GPL-2.0
/*
 * cpu_hog: a program that costs a lot per event, for the tests of the CPU
 * budget: each sched_get_priority_min(HOG_POLICY) call spins through
 * HOG_ROUNDS rounds of arithmetic (bpf_loop) before it is counted, tens of
 * microseconds where a counter takes tens of nanoseconds. Other calls cost
 * a comparison (the other tests ask for SCHED_OTHER, 0).
 *
 * Hooks: tracepoint raw_syscalls/sys_enter.
 * Maps:  cpu_hog_calls_total (ARRAY, u32 0 -> u64 calls counted)
 *          -> ebpf_cpu_hog_calls_total
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "priority_syscalls.h"

/* tests/integration/guards.rs repeats it. */
#define HOG_POLICY 7001
/* Under bpf_loop's limit of 1 << 23 (include/linux/bpf.h, BPF_MAX_LOOPS). */
#define HOG_ROUNDS 10000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} cpu_hog_calls_total SEC(".maps");

/* What the rounds compute, kept so that nothing can be left out. */
u64 cpu_hog_state;

static long spin(u64 round, void *state)
{
	u64 *x = state;

	*x = *x * 6364136223846793005ULL + round;
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int hog(struct trace_event_raw_sys_enter *ctx)
{
	u64 x = cpu_hog_state, *calls;
	u32 slot = 0;

	if (ctx->id != NR_PRIORITY_MIN || ctx->args[0] != HOG_POLICY)
		return 0;
	bpf_loop(HOG_ROUNDS, spin, &x, 0);
	cpu_hog_state = x;
	calls = bpf_map_lookup_elem(&cpu_hog_calls_total, &slot);
	if (calls)
		__sync_fetch_and_add(calls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
