// SPDX-License-Identifier: GPL-2.0
/*
 * syscalls: how many times each system call was entered, machine-wide.
 *
 * Hook: tracepoint raw_syscalls/sys_enter (stable ABI, one hook for every
 *       syscall; see include/trace/events/syscalls.h).
 * Maps: syscalls_total (HASH, u64 syscall number -> u64 count)
 *       -> ebpf_syscalls_total{syscall="<name>"}
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

/* Syscall numbers stay well below 1024 on every architecture (x86_64: ~460). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} syscalls_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 nr = ctx->id;

	increment_map(&syscalls_total, &nr, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
