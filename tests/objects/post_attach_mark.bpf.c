// SPDX-License-Identifier: GPL-2.0
/*
 * ebpf_exporter's initialisation convention, for objects.rs: do_init is a
 * uprobe on the exporter's own post_attach_mark(), which the exporter calls
 * once after the config's programs are attached. It counts its runs in
 * mark_a_runs_total and mark_b_runs_total (two configs of this object each
 * export one) and keeps the process it ran in, in mark_pid. sys_enter is
 * the rest of the config, attached before the mark.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

u64 mark_a_runs_total = 0;
u64 mark_b_runs_total = 0;
u64 mark_pid = 0;
u64 syscalls_seen_total = 0;

SEC("uprobe//proc/self/exe:post_attach_mark")
int do_init(void *ctx)
{
	__sync_fetch_and_add(&mark_a_runs_total, 1);
	__sync_fetch_and_add(&mark_b_runs_total, 1);
	mark_pid = bpf_get_current_pid_tgid() >> 32;
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(void *ctx)
{
	__sync_fetch_and_add(&syscalls_seen_total, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
