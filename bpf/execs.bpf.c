// SPDX-License-Identifier: GPL-2.0
/*
 * execs: successful execve() calls per user, the "Hello World" counter of
 * Learning eBPF (ch. 2, hello-map.py) on a stable hook.
 *
 * Hook: tracepoint sched/sched_process_exec, which fires once the new image
 *       is in place, so failed execs are not counted and the uid is the one
 *       the new program runs as (include/trace/events/sched.h).
 * Maps: execs_total (HASH, u32 uid -> u64 count) -> ebpf_execs_total{uid}
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, u64);
} execs_total SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int sched_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	/* The low 32 bits of bpf_get_current_uid_gid() are the uid. */
	u32 uid = (u32)bpf_get_current_uid_gid();

	increment_map(&execs_total, &uid, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
