// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_drop: drops every packet the interface receives and counts them, to
 * simulate total packet loss on a test's private loopback while it is
 * attached (the kernel has no netem, the test machine no iptables).
 *
 * Hook: XDP on the interface the test's config names (attach.xdp).
 * Maps: xdp_dropped_total (ARRAY, one u64 slot) -> ebpf_xdp_dropped_total
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} xdp_dropped_total SEC(".maps");

SEC("xdp")
int drop_packets(struct xdp_md *ctx)
{
	u32 slot = 0;
	u64 *count = bpf_map_lookup_elem(&xdp_dropped_total, &slot);

	if (count)
		__sync_fetch_and_add(count, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
