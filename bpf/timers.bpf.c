// SPDX-License-Identifier: GPL-2.0
/*
 * timers: kernel timers started, by the function each will call when it
 * expires (ebpf_exporter's timers example, on the stable tracepoint).
 *
 * Hook: tracepoint timer/timer_start, which fires each time a timer_list is
 *       queued on the timer wheel: add_timer(), and mod_timer() and friends
 *       unless they leave a pending timer in its bucket (kernel/time/timer.c
 *       enqueue_timer(), include/trace/events/timer.h). hrtimers (nanosleep,
 *       setitimer, poll timeouts) have their own tracepoint,
 *       timer/hrtimer_start, and are not counted here.
 * Maps: timer_starts_total (HASH, u64 callback address -> u64 count)
 *       -> ebpf_timer_starts_total{function}, the address resolved to a
 *       kernel symbol by the ksym decoder.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

/* Distinct timer callbacks in use: a few hundred on a busy machine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} timer_starts_total SEC(".maps");

SEC("tracepoint/timer/timer_start")
int timer_start(struct trace_event_raw_timer_start *ctx)
{
	u64 function = (u64)ctx->function;

	increment_map(&timer_starts_total, &function, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
