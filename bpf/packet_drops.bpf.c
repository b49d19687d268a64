// SPDX-License-Identifier: GPL-2.0
/*
 * packet_drops: socket buffers the kernel dropped, machine-wide, by the
 * reason it gives (enum skb_drop_reason, include/net/dropreason-core.h).
 *
 * Hook: tracepoint skb/kfree_skb, which fires for every skb freed as
 *       dropped, with its reason (include/trace/events/skb.h;
 *       sk_skb_reason_drop(), net/core/skbuff.c). skbs freed after use go
 *       to skb/consume_skb instead and are not seen here.
 * Maps: packet_drops_total (PERCPU_HASH, u32 reason -> u64 count)
 *       -> ebpf_packet_drops_total{reason}
 *
 * The reason is stored as the kernel's number; the numbers change between
 * kernel versions, so the skb_drop_reason decoder names them from the
 * running kernel's BTF. Reasons that mean "not a drop" (SKB_NOT_DROPPED_YET,
 * SKB_CONSUMED) are skipped, by their value on this kernel (CO-RE): the
 * kernel sends neither here, but a caller passing one by mistake must not
 * count as a drop.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

/*
 * Distinct reasons kept: Linux 6.18 has 127 core reasons, and subsystems
 * (mac80211, openvswitch) add a few dozen each. A reason first seen once
 * the map is full is not counted.
 */
#define MAX_REASONS 512

/*
 * Per CPU: a flood of one kind of drop (a firewall rule, packets for a
 * closed port) hits every CPU at once, and a shared counter would bounce
 * between their caches.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_REASONS);
	__type(key, u32);
	__type(value, u64);
} packet_drops_total SEC(".maps");

SEC("tracepoint/skb/kfree_skb")
int kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	u32 reason = ctx->reason;

	/* Both came after the reason field (Linux 5.18 and 6.2); where one is
	 * missing its check is left out by the loader. */
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_NOT_DROPPED_YET) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET))
		return 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	increment_map(&packet_drops_total, &reason, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
