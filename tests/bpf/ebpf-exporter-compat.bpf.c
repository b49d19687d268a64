// SPDX-License-Identifier: GPL-2.0
/*
 * ebpf-exporter-compat: a program written as ebpf_exporter's examples are,
 * to check that such programs build and count as they do there: a `-` in
 * its file name (embedded as ebpf_exporter_compat), a system header
 * (<linux/errno.h>, which needs the multiarch <asm/errno.h>) and the
 * helpers of ebpf_exporter's maps.bpf.h and bits.bpf.h.
 *
 * Hook:  uprobe `observe` on truth_observe(u64 value) of
 *        tests/target/truth_target.c, given by the config's attach entry.
 * Maps:  compat_calls_total (HASH, u64 value -> calls; increment_map)
 *        compat_percpu_calls_total (PERCPU_HASH, u64 value -> calls;
 *          increment_map_nosync)
 *        compat_errno_total (HASH, u32 value -> calls, for the values
 *          ENOENT and EINVAL only; lookup_or_zero_init_key)
 *        compat_observed_total (ARRAY, one slot: every call; read_array_ptr)
 *        compat_exp2, compat_exp2_nosync, compat_exp2zero,
 *          compat_exp2zero_nosync (struct compat_key -> u64), one per
 *          histogram helper, the _nosync ones per CPU
 * Globals: compat_last_count (.bss, what increment_map returned last: the
 *          calls of the last value, counting that one)
 */
#include <vmlinux.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"

/* Top bucket of every histogram; tests/integration/compat.rs repeats it. */
#define MAX_BUCKET 10

struct compat_key {
	u32 bucket;
};

#define COUNTER_MAP(name, map_type, key_type, entries)                                 \
	struct {                                                                       \
		__uint(type, map_type);                                                \
		__uint(max_entries, entries);                                          \
		__type(key, key_type);                                                 \
		__type(value, u64);                                                    \
	} name SEC(".maps")

COUNTER_MAP(compat_calls_total, BPF_MAP_TYPE_HASH, u64, 1024);
COUNTER_MAP(compat_percpu_calls_total, BPF_MAP_TYPE_PERCPU_HASH, u64, 1024);
COUNTER_MAP(compat_errno_total, BPF_MAP_TYPE_HASH, u32, 2);
COUNTER_MAP(compat_observed_total, BPF_MAP_TYPE_ARRAY, u32, 1);
/* Buckets and the sum: ebpf_exporter's helpers keep no overflow slot. */
COUNTER_MAP(compat_exp2, BPF_MAP_TYPE_HASH, struct compat_key, MAX_BUCKET + 2);
COUNTER_MAP(compat_exp2_nosync, BPF_MAP_TYPE_PERCPU_HASH, struct compat_key, MAX_BUCKET + 2);
COUNTER_MAP(compat_exp2zero, BPF_MAP_TYPE_HASH, struct compat_key, MAX_BUCKET + 2);
COUNTER_MAP(compat_exp2zero_nosync, BPF_MAP_TYPE_PERCPU_ARRAY, u32, MAX_BUCKET + 2);

s64 compat_last_count;

static __always_inline int count_errno(u64 value)
{
	u32 code = value;
	u64 *count;

	lookup_or_zero_init_key(&compat_errno_total, &code, count);
	__sync_fetch_and_add(count, 1);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(observe, u64 value)
{
	struct compat_key key = {};
	u32 zero = 0;
	u64 *observed;

	compat_last_count = increment_map(&compat_calls_total, &value, 1);
	increment_map_nosync(&compat_percpu_calls_total, &value, 1);
	increment_exp2_histogram(&compat_exp2, key, value, MAX_BUCKET);
	increment_exp2_histogram_nosync(&compat_exp2_nosync, key, value, MAX_BUCKET);
	increment_exp2zero_histogram(&compat_exp2zero, key, value, MAX_BUCKET);
	increment_exp2zero_histogram_nosync(&compat_exp2zero_nosync, key, value, MAX_BUCKET);
	if (value == ENOENT || value == EINVAL)
		count_errno(value);

	read_array_ptr(&compat_observed_total, &zero, observed);
	__sync_fetch_and_add(observed, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
