// SPDX-License-Identifier: GPL-2.0
/*
 * tcp_connect_latency: how long TCP active opens (connect()) take, from
 * the start of the handshake to the connection being established,
 * machine-wide, as a histogram per address family; and how many never got
 * there.
 *
 * Hook: tracepoint sock/inet_sock_set_state, which fires at every state
 *       change of an inet socket (include/trace/events/sock.h). connect()
 *       moves a TCP socket from CLOSE to SYN_SENT, then picks a source
 *       port and sends the SYN (tcp_v4_connect(), tcp_v6_connect()); the
 *       SYN-ACK moves it on to ESTABLISHED (tcp_rcv_synsent_state_process(),
 *       net/ipv4/tcp_input.c). Finding no free source port sends it back
 *       to CLOSE, a failure.
 * Maps: connect_start (LRU_HASH, u64 socket address -> u64 SYN_SENT time,
 *         ns), the connects in flight
 *       tcp_connect_latency_seconds (HASH, {u32 family, u32 bucket} -> u64)
 *         -> ebpf_tcp_connect_latency_seconds{family}, exp2 buckets of
 *         2^i ns
 * Globals: tcp_connect_failures_total (.bss, connects that left SYN_SENT
 *          for anything but ESTABLISHED: refused, timed out, unreachable,
 *          no source port, aborted by the caller)
 *          -> ebpf_tcp_connect_failures_total
 *
 * A simultaneous open (both ends connect() at once, or a socket connects
 * to its own address) goes from SYN_SENT through SYN_RECV to ESTABLISHED;
 * it stays timed through SYN_RECV. Passive opens also go SYN_RECV ->
 * ESTABLISHED, but never through SYN_SENT, so they find no start time.
 * Connects already in SYN_SENT when the program was attached are neither
 * timed nor counted as failures. Only IPPROTO_TCP sockets count: an MPTCP
 * connection's own socket changes state along with its TCP subflow, which
 * is counted already.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "histogram.bpf.h"

/* Buckets 0..37: up to 2^37 ns (~137 s), past the ~127 s a connect takes
 * to give up with the default 6 SYN retries (net.ipv4.tcp_syn_retries). */
#define MAX_BUCKET 37

/*
 * Connects in flight at once: at a 100 ms round trip, 8192 in flight is
 * some 80k new connects per second. Past that, the least recently started
 * make room, the ones most likely to be waiting out a SYN timeout; their
 * result is then lost.
 */
#define MAX_IN_FLIGHT 8192

struct tcp_connect_key {
	u32 family;
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_IN_FLIGHT);
	__type(key, u64);
	__type(value, u64);
} connect_start SEC(".maps");

/* (MAX_BUCKET + 3) slots per family (AF_INET, AF_INET6): buckets, sum,
 * overflow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (MAX_BUCKET + 3) * 2);
	__type(key, struct tcp_connect_key);
	__type(value, u64);
} tcp_connect_latency_seconds SEC(".maps");

u64 tcp_connect_failures_total = 0;

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	u64 sk = (u64)ctx->skaddr;
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
	struct tcp_connect_key key = {};
	u64 *start, now;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		now = bpf_ktime_get_ns();
		bpf_map_update_elem(&connect_start, &sk, &now, BPF_ANY);
		return 0;
	}
	if ((oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV) || newstate == TCP_SYN_RECV)
		return 0;
	start = bpf_map_lookup_elem(&connect_start, &sk);
	if (!start)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		key.family = ctx->family;
		record_exp2_histogram(&tcp_connect_latency_seconds, key,
					 bpf_ktime_get_ns() - *start, MAX_BUCKET);
	} else {
		__sync_fetch_and_add(&tcp_connect_failures_total, 1);
	}
	bpf_map_delete_elem(&connect_start, &sk);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
