// SPDX-License-Identifier: GPL-2.0
/*
 * missing_hooks: programs on tracepoints no kernel has, standing in for
 * architecture-specific ones (page_faults' exceptions/page_fault_user on a
 * kernel that is not x86), to check how their config fails.
 *
 * Hooks: tp_btf/no_such_tracepoint (refused at load: no BTF type to find)
 *        tracepoint/no_such_category/no_such_tracepoint (fails to attach)
 *        raw_tp/no_such_tracepoint (fails to attach)
 * Maps:  missing_hooks_total (ARRAY, u32 -> u64), never written.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} missing_hooks_total SEC(".maps");

SEC("tp_btf/no_such_tracepoint")
int BPF_PROG(missing_tp_btf)
{
	return 0;
}

SEC("tracepoint/no_such_category/no_such_tracepoint")
int missing_tracepoint(void *ctx)
{
	return 0;
}

SEC("raw_tp/no_such_tracepoint")
int missing_raw_tp(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
