// SPDX-License-Identifier: GPL-2.0
/*
 * syscall_latency: how long each system call takes, from entry to return,
 * machine-wide, as a histogram per syscall.
 *
 * Hooks: tracepoint raw_syscalls/sys_enter   notes the entry time per thread
 *        tracepoint raw_syscalls/sys_exit    records the time spent
 *        tracepoint sched/sched_process_exit forgets a thread that exits
 *        inside exit() or exit_group(), which never return
 *        (include/trace/events/syscalls.h, include/trace/events/sched.h).
 * Maps:  syscall_latency_start (HASH, u32 thread id -> u64 entry time, ns)
 *        syscall_latency_seconds (HASH, {u32 syscall, u32 bucket} -> u64)
 *        -> ebpf_syscall_latency_seconds{syscall}, exp2 buckets of 2^i ns.
 *
 * A syscall entered before the program was attached has no entry time and
 * is not recorded; neither is one whose thread found the start map full.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "histogram.bpf.h"

/* Buckets 0..36: up to 2^36 ns (~68.7 s); slower calls land in overflow. */
#define MAX_BUCKET 36

/*
 * Syscall numbers recorded: x86_64 stays below 512
 * (arch/x86/entry/syscalls/syscall_64.tbl). Larger ids are x32 calls (bit
 * 30 set, __X32_SYSCALL_BIT) or invalid numbers (-1); they are skipped so
 * they cannot fill the map.
 */
#define MAX_SYSCALLS 512

/* Threads inside a syscall at once, machine-wide. */
#define MAX_THREADS 32768

struct syscall_latency_key {
	u32 syscall;
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, u32);
	__type(value, u64);
} syscall_latency_start SEC(".maps");

/* (MAX_BUCKET + 3) slots per syscall: buckets, sum, overflow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (MAX_BUCKET + 3) * MAX_SYSCALLS);
	__type(key, struct syscall_latency_key);
	__type(value, u64);
} syscall_latency_seconds SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	/* The low 32 bits of bpf_get_current_pid_tgid() are the thread id. */
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 ts = bpf_ktime_get_ns();

	if ((u64)ctx->id >= MAX_SYSCALLS)
		return 0;
	bpf_map_update_elem(&syscall_latency_start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct syscall_latency_key key = {};
	u64 *start, delta;

	start = bpf_map_lookup_elem(&syscall_latency_start, &tid);
	if (!start)
		return 0;
	delta = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&syscall_latency_start, &tid);
	if ((u64)ctx->id >= MAX_SYSCALLS)
		return 0;

	key.syscall = ctx->id;
	record_exp2_histogram(&syscall_latency_seconds, key, delta, MAX_BUCKET);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int sched_process_exit(void *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&syscall_latency_start, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
