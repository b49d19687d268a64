// SPDX-License-Identifier: GPL-2.0
/*
 * A run-time object for the tests of objects.rs: the layout of
 * bpf/syscalls.bpf.c (map syscalls_total, u64 syscall number -> u64), but
 * every call counts twice, so an exported count tells which object ran.
 * Self-contained (no header of bpf/include but vmlinux.h), as a user's
 * program compiled with plain clang would be.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} syscalls_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 nr = ctx->id, two = 2, *count;

	count = bpf_map_lookup_elem(&syscalls_total, &nr);
	if (count)
		__sync_fetch_and_add(count, 2);
	else
		bpf_map_update_elem(&syscalls_total, &nr, &two, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
