// SPDX-License-Identifier: GPL-2.0
/*
 * A run-time object in ebpf_exporter's style for objects.rs: it is given
 * the address of the kernel function `schedule` through `kaddrs` and copies
 * it into a global variable the config exports as a gauge, so the test can
 * hold it to /proc/kallsyms. kaddr_no_such_symbol_here is there for a
 * config that asks for a symbol the kernel lacks.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

const volatile u64 kaddr_schedule = 0;
/* No kernel has it: a config that asks for it fails at load. */
const volatile u64 kaddr_no_such_symbol_here = 0;

u64 kaddr_seen = 0;

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(void *ctx)
{
	kaddr_seen = kaddr_schedule;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
