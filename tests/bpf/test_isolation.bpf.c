// SPDX-License-Identifier: GPL-2.0
/*
 * test_isolation: one object whose programs fail in different ways, to prove
 * that each failure stays with its own program.
 *
 * Hooks: tracepoint raw_syscalls/sys_enter (works everywhere), a kprobe
 *        (fails to attach on kernels without CONFIG_KPROBES), an fentry
 *        (refused at load on kernels without trampolines) and a program the
 *        verifier rejects (an unchecked hash map lookup).
 * Maps:  isolation_events_total (ARRAY, u32 -> u64), counted by the
 *        tracepoint for getppid() only.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} isolation_events_total SEC(".maps");

/* Hash lookups may return NULL whatever the key; the verifier knows it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} isolation_scratch SEC(".maps");

/* x86_64 getppid (arch/x86/entry/syscalls/syscall_64.tbl) */
#define NR_GETPPID 110

SEC("tracepoint/raw_syscalls/sys_enter")
int works(struct trace_event_raw_sys_enter *ctx)
{
	u32 slot = 0;
	u64 *count;

	if (ctx->id != NR_GETPPID)
		return 0;
	count = bpf_map_lookup_elem(&isolation_events_total, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

SEC("kprobe/do_nanosleep")
int needs_kprobes(struct pt_regs *ctx)
{
	return 0;
}

SEC("fentry/do_nanosleep")
int BPF_PROG(needs_trampolines)
{
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int rejected_by_verifier(void *ctx)
{
	u32 slot = 0;
	u64 *count = bpf_map_lookup_elem(&isolation_scratch, &slot);

	/* No NULL check: the verifier must refuse this program. */
	return *count;
}

char LICENSE[] SEC("license") = "GPL";
