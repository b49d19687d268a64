// SPDX-License-Identifier: GPL-2.0
/*
 * tcp_retransmits: TCP retransmissions, by connection (bcc's tcpretrans, as
 * a counter).
 *
 * Hook: tracepoint tcp/tcp_retransmit_skb, which fires once per
 *       retransmitted skb: one segment, or several under TSO/GSO
 *       (net/ipv4/tcp_output.c __tcp_retransmit_skb(),
 *       include/trace/events/tcp.h). Since the event gained its err field it
 *       also fires for retransmissions that failed locally; those are not
 *       counted, as older kernels never reported them.
 * Maps: tcp_retransmits_total (LRU_HASH, struct tcp_retransmits_key -> u64)
 *       -> ebpf_tcp_retransmits_total{saddr, daddr, sport, dport}
 *
 * Addresses are 16 bytes for both families, as the tracepoint stores them:
 * IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d, TP_STORE_V4MAPPED),
 * which the inet_ip decoder prints as a.b.c.d. The tracepoint has already
 * turned the ports to host byte order (ntohs), which the uint decoder reads.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

/* Connections tracked at once; the least recently retransmitting make room. */
#define MAX_CONNECTIONS 8192

struct tcp_retransmits_key {
	u8 saddr[16];
	u8 daddr[16];
	u16 sport;
	u16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CONNECTIONS);
	__type(key, struct tcp_retransmits_key);
	__type(value, u64);
} tcp_retransmits_total SEC(".maps");

/*
 * The event since it gained its err field (after Linux 6.12), declared
 * here rather than taken from vmlinux.h, so the program builds against a
 * vmlinux.h of either kind (arm64's is from 6.12).
 */
struct trace_event_raw_tcp_retransmit_skb___err {
	u16 sport;
	u16 dport;
	u8 saddr_v6[16];
	u8 daddr_v6[16];
	int err;
} __attribute__((preserve_access_index));

/* Until the err field came, tcp_retransmit_skb was an event of the
 * tcp_event_sk_skb class, fired for successful retransmissions only. The
 * fields read here are the same in both. */
struct trace_event_raw_tcp_event_sk_skb___old {
	u16 sport;
	u16 dport;
	u8 saddr_v6[16];
	u8 daddr_v6[16];
} __attribute__((preserve_access_index));

#define READ_KEY(key, ev)                                                      \
	do {                                                                   \
		bpf_core_read(&(key).saddr, sizeof((key).saddr), &(ev)->saddr_v6); \
		bpf_core_read(&(key).daddr, sizeof((key).daddr), &(ev)->daddr_v6); \
		(key).sport = BPF_CORE_READ(ev, sport);                        \
		(key).dport = BPF_CORE_READ(ev, dport);                        \
	} while (0)

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_skb(void *ctx)
{
	struct tcp_retransmits_key key = {};

	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb___err)) {
		struct trace_event_raw_tcp_retransmit_skb___err *ev = ctx;

		if (BPF_CORE_READ(ev, err))
			return 0;
		READ_KEY(key, ev);
	} else {
		struct trace_event_raw_tcp_event_sk_skb___old *ev = ctx;

		READ_KEY(key, ev);
	}
	increment_map(&tcp_retransmits_total, &key, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
