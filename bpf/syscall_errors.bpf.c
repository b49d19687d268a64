// SPDX-License-Identifier: GPL-2.0
/*
 * syscall_errors: system calls that failed, machine-wide, by syscall and
 * error number.
 *
 * Hook: tracepoint raw_syscalls/sys_exit, which sees every syscall's return
 *       value (include/trace/events/syscalls.h).
 * Maps: syscall_errors_total (HASH, {u32 syscall, u32 errno} -> u64 count)
 *       -> ebpf_syscall_errors_total{syscall,errno}
 *
 * A failure is a return value in -MAX_ERRNO..-1, the same test the C
 * library applies (IS_ERR_VALUE, include/linux/err.h): a syscall may
 * return values that are negative as a signed long without failing, such
 * as lseek() on /proc/<pid>/mem at a high offset.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

/* include/linux/err.h */
#define MAX_ERRNO 4095

/*
 * Syscall numbers recorded: x86_64 stays below 512
 * (arch/x86/entry/syscalls/syscall_64.tbl). Larger ids are x32 calls (bit
 * 30 set, __X32_SYSCALL_BIT) or invalid numbers (-1, which fails with
 * ENOSYS); they are skipped so they cannot fill the map.
 */
#define MAX_SYSCALLS 512

/*
 * Distinct (syscall, errno) pairs kept. A busy host sees a few dozen; a
 * pair first seen once the map is full is not counted.
 */
#define MAX_PAIRS 2048

struct syscall_errors_key {
	u32 syscall;
	u32 errno;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PAIRS);
	__type(key, struct syscall_errors_key);
	__type(value, u64);
} syscall_errors_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct syscall_errors_key key = {};

	if (ret >= 0 || ret < -MAX_ERRNO || (u64)ctx->id >= MAX_SYSCALLS)
		return 0;
	key.syscall = ctx->id;
	key.errno = -ret;
	increment_map(&syscall_errors_total, &key, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
