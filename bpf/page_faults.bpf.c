// SPDX-License-Identifier: GPL-2.0
/*
 * page_faults: page faults taken, machine-wide, by the mode the CPU was in
 * (user or kernel) and the access that faulted (read, write or
 * instruction fetch). x86 only: the tracepoints are x86's own.
 *
 * Hooks: tp_btf/page_fault_user    a fault in user mode
 *        tp_btf/page_fault_kernel  a fault in kernel mode, most often on a
 *                                  user address (copy_to_user() and friends)
 *        (arch/x86/include/asm/trace/exceptions.h; both fire once per
 *        hardware fault, before it is handled, from handle_page_fault(),
 *        arch/x86/mm/fault.c. BTF-typed tracepoints: their arguments are
 *        read straight from the call, with no trace record to fill.)
 * Maps:  page_faults_total (PERCPU_HASH, {u32 origin, u32 access} -> u64)
 *        -> ebpf_page_faults_total{origin,access}, at most 6 series.
 *
 * On a kernel without these tracepoints (any other architecture) both
 * programs are refused at load, naming the missing BTF type, and only this
 * config fails.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"

/* enum x86_pf_error_code, arch/x86/include/asm/trap_pf.h */
#define X86_PF_WRITE (1 << 1)
#define X86_PF_INSTR (1 << 4)

/* Label values, named by the config's static_map decoders. */
#define ORIGIN_USER 0
#define ORIGIN_KERNEL 1
#define ACCESS_READ 0
#define ACCESS_WRITE 1
#define ACCESS_EXEC 2

struct page_faults_key {
	u32 origin;
	u32 access;
};

/*
 * Per CPU: faults come from every CPU at high rates, and shared counters
 * would bounce between their caches.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 6);
	__type(key, struct page_faults_key);
	__type(value, u64);
} page_faults_total SEC(".maps");

static __always_inline void count(u32 origin, unsigned long error_code)
{
	struct page_faults_key key = {
		.origin = origin,
		/* An instruction fetch is never a write; test it first. */
		.access = error_code & X86_PF_INSTR   ? ACCESS_EXEC
			  : error_code & X86_PF_WRITE ? ACCESS_WRITE
						      : ACCESS_READ,
	};

	increment_map(&page_faults_total, &key, 1);
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	count(ORIGIN_USER, error_code);
	return 0;
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(page_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	count(ORIGIN_KERNEL, error_code);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
