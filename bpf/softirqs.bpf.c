// SPDX-License-Identifier: GPL-2.0
/*
 * softirqs: how long each softirq handler runs, machine-wide, as a
 * histogram per kind (timer, net_rx, rcu, …).
 *
 * Hooks: tracepoint irq/softirq_entry   notes the start time
 *        tracepoint irq/softirq_exit    records the time spent
 *        (include/trace/events/irq.h; both fire around each handler call
 *        in handle_softirqs(), kernel/softirq.c, on the softirq's CPU).
 * Maps:  softirq_start (PERCPU_ARRAY, u32 vec -> u64 entry time, ns)
 *        softirq_service_seconds (PERCPU_HASH, {u32 kind, u32 bucket} -> u64)
 *        -> ebpf_softirq_service_seconds{kind}, exp2 buckets of 2^i ns.
 *
 * A CPU runs one handler of a kind at a time (softirqs do not nest on a
 * CPU), so a per-CPU slot per kind holds its start time. A handler that
 * was running when the program was attached has no start time and is not
 * recorded.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "histogram.bpf.h"

/* Buckets 0..26: up to 2^26 ns (~67 ms); longer runs land in overflow. */
#define MAX_BUCKET 26

/*
 * Softirq kinds, HI_SOFTIRQ..RCU_SOFTIRQ (include/linux/interrupt.h); a
 * vec beyond them finds no start slot and is skipped.
 */
#define NR_SOFTIRQS 10

struct softirq_key {
	u32 kind;
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_SOFTIRQS);
	__type(key, u32);
	__type(value, u64);
} softirq_start SEC(".maps");

/*
 * (MAX_BUCKET + 3) slots per kind: buckets, sum, overflow. Per CPU: every
 * CPU runs softirqs all the time, and shared counters would bounce between
 * their caches.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, (MAX_BUCKET + 3) * NR_SOFTIRQS);
	__type(key, struct softirq_key);
	__type(value, u64);
} softirq_service_seconds SEC(".maps");

SEC("tracepoint/irq/softirq_entry")
int softirq_entry(struct trace_event_raw_softirq *ctx)
{
	u32 vec = ctx->vec;
	u64 *start = bpf_map_lookup_elem(&softirq_start, &vec);

	if (start)
		*start = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/irq/softirq_exit")
int softirq_exit(struct trace_event_raw_softirq *ctx)
{
	u32 vec = ctx->vec;
	struct softirq_key key = {};
	u64 *start = bpf_map_lookup_elem(&softirq_start, &vec);
	u64 delta;

	if (!start || !*start)
		return 0;
	delta = bpf_ktime_get_ns() - *start;
	*start = 0;

	key.kind = vec;
	record_exp2_histogram(&softirq_service_seconds, key, delta, MAX_BUCKET);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
