// SPDX-License-Identifier: GPL-2.0
/*
 * Sections ebpf_exporter handles itself, for objects.rs: an XDP program
 * for the interface its section names, and a perf_event program run by a
 * software cpu-clock event sampled 200 times a second on every CPU.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} cpu_samples_total SEC(".maps");

SEC("perf_event/type=1,config=0,frequency=200")
int on_sample(void *ctx)
{
	u32 cpu = bpf_get_smp_processor_id();
	u64 *count = bpf_map_lookup_elem(&cpu_samples_total, &cpu);

	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

SEC("xdp/bpfxsec0")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
