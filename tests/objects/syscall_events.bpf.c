// SPDX-License-Identifier: GPL-2.0
/*
 * An event counter in ebpf_exporter's style (perf_event_array: true) for
 * objects.rs: one event per sched_get_priority_min or _max call, its bytes
 * the syscall number, counted by the exporter as the events arrive. Built
 * with -DRING_BUFFER, the events go through a ring buffer instead of a
 * perf event array.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "../bpf/priority_syscalls.h"

struct {
#ifdef RING_BUFFER
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
#else
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
#endif
} syscall_events_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 nr = ctx->id;

	if (nr != NR_PRIORITY_MIN && nr != NR_PRIORITY_MAX)
		return 0;
#ifdef RING_BUFFER
	bpf_ringbuf_output(&syscall_events_total, &nr, sizeof(nr), 0);
#else
	bpf_perf_event_output(ctx, &syscall_events_total, BPF_F_CURRENT_CPU, &nr, sizeof(nr));
#endif
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
