// SPDX-License-Identifier: GPL-2.0
/*
 * A bare SEC("perf_event") program, for the attach entry tests of
 * src/config/attach.rs and objects.rs: the section names no event, so the
 * config's `attach:` entry says which (`perf_event: {type, config,
 * frequency}`); each sample counts in cpu_samples_total under the CPU it
 * ran on.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} cpu_samples_total SEC(".maps");

SEC("perf_event")
int on_sample(void *ctx)
{
	u32 cpu = bpf_get_smp_processor_id();
	u64 *count = bpf_map_lookup_elem(&cpu_samples_total, &cpu);

	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
