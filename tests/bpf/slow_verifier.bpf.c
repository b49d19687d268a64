// SPDX-License-Identifier: GPL-2.0
/*
 * slow_verifier: programs the verifier takes a long time over, so a test can
 * load them during a reload and check that the other configs' snapshots
 * keep coming meanwhile.
 *
 * Hooks: tracepoint raw_syscalls/sys_enter, several times; each program
 *        walks a long bounded loop whose every iteration the verifier must
 *        simulate (the loop variable differs each time, so no state is
 *        pruned), close to its one-million-instruction budget.
 * Maps:  slow_verifier_events_total (ARRAY, u32 -> u64), counted for
 *        getppid() only.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} slow_verifier_events_total SEC(".maps");

/* x86_64 getppid (arch/x86/entry/syscalls/syscall_64.tbl) */
#define NR_GETPPID 110
/* Iterations per program: about 12 instructions each, under the
 * verifier's 1,000,000 processed instructions (kernel/bpf/verifier.c,
 * BPF_COMPLEXITY_LIMIT_INSNS). */
#define ITERATIONS 90000

static __always_inline int slow(struct trace_event_raw_sys_enter *ctx)
{
	u32 slot = 0;
	u64 *count, sum = 0;

	if (ctx->id != NR_GETPPID)
		return 0;
	for (u32 i = 0; i < ITERATIONS; i++) {
		sum += i ^ (sum >> 3);
		if (sum & 1)
			sum += 7;
	}
	count = bpf_map_lookup_elem(&slow_verifier_events_total, &slot);
	if (count && sum)
		__sync_fetch_and_add(count, 1);
	return 0;
}

/* Each program is verified on its own: eight of them take the verifier
 * about eight times as long. */
#define SLOW(name)                                                   \
	SEC("tracepoint/raw_syscalls/sys_enter")                     \
	int name(struct trace_event_raw_sys_enter *ctx) { return slow(ctx); }

SLOW(slow_a)
SLOW(slow_b)
SLOW(slow_c)
SLOW(slow_d)
SLOW(slow_e)
SLOW(slow_f)
SLOW(slow_g)
SLOW(slow_h)

char LICENSE[] SEC("license") = "GPL";
