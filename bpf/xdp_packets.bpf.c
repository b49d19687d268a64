// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_packets: packets received on one interface, the lecture's XDP counter
 * done right: a PERCPU_ARRAY sized by the kernel to the possible CPUs (no
 * hard-coded CPU count, no cross-CPU contention) and XDP_PASS on every path,
 * so counting never drops traffic.
 *
 * Hook: XDP on the interface named in configs/xdp_packets.yaml (attach.xdp).
 * Maps: xdp_packets_total (PERCPU_ARRAY, one u64 slot)
 *       -> ebpf_xdp_packets_total{cpu} (or summed over CPUs)
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} xdp_packets_total SEC(".maps");

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	u32 slot = 0;
	u64 *count = bpf_map_lookup_elem(&xdp_packets_total, &slot);

	/* Per-CPU slot: only this CPU writes it, a plain add is exact. */
	if (count)
		*count += 1;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
