// SPDX-License-Identifier: GPL-2.0
/*
 * ebpf_exporter's cgroup_id_map, for objects.rs: system calls counted
 * only for tasks of the cgroups the exporter put in cgroup_filter.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} filtered_calls_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 cgroup = bpf_get_current_cgroup_id(), nr = ctx->id, one = 1, *count;

	if (!bpf_map_lookup_elem(&cgroup_filter, &cgroup))
		return 0;
	count = bpf_map_lookup_elem(&filtered_calls_total, &nr);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&filtered_calls_total, &nr, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
