// SPDX-License-Identifier: GPL-2.0
/*
 * truth: records exactly what tests/target/truth_target.c is told to do, so
 * tests can compare every exported number with what they asked for.
 *
 * Hooks: uprobes, each given by the config's `attach:` entries (binary,
 *        function, and the target's pid): `observe` on truth_observe(u64
 *        value), `gauge_set` on truth_gauge_set(s64 value), `string_seen`
 *        on truth_string(const char *text) and `ip_seen` on
 *        truth_ip(const u8 *address, int len).
 * Maps:  truth_calls_total (HASH, u64 value -> u64 calls)
 *          -> ebpf_truth_calls_total{value}
 *        truth_percpu_calls_total (PERCPU_ARRAY, u32 0 -> u64 calls)
 *          -> ebpf_truth_percpu_calls_total{cpu}
 *        truth_exp2, truth_exp2zero, truth_linear, truth_fixed (HASH,
 *          struct hist_key -> u64), one histogram per bucket type of
 *          histogram.bpf.h, and truth_exp2_percpu (PERCPU_HASH, exp2)
 *          -> ebpf_<name>_bucket{le}, _count, _sum
 *        truth_slot_calls_total (ARRAY, BPF_F_MMAPABLE, u32 value % 4 ->
 *          u64 calls of truth_observe) -> ebpf_truth_slot_calls_total{slot},
 *          read through its memory mapping
 *        truth_gauge (ARRAY, u32 0 -> s64 last value) -> ebpf_truth_gauge
 *        truth_cgroup_calls_total (HASH, u64 cgroup id -> u64 calls of
 *          truth_observe) -> ebpf_truth_cgroup_calls_total{cgroup}
 *        truth_strings_total (HASH, char[16] text -> u64 calls)
 *          -> ebpf_truth_strings_total{text}
 *        truth_ipv4_total (HASH, 4-byte address -> u64 calls) and
 *        truth_ipv6_total (HASH, 16-byte address -> u64 calls)
 *          -> ebpf_truth_ipv4_total{address}, ebpf_truth_ipv6_total{address}
 * Globals: truth_last_value (.bss, the last gauge value) and
 *          truth_generation (.data, 7 plus the gauge_set calls); libbpf
 *          creates both sections BPF_F_MMAPABLE, so they are read through
 *          their mappings too.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "histogram.bpf.h"

/* Top buckets; tests/integration/truth.rs configs repeat them. */
#define EXP2_MAX_BUCKET 10
#define EXP2ZERO_MAX_BUCKET 10
#define LINEAR_MAX_BUCKET 20
/* bucket_type fixed: the bucket keys, the last one being max_bucket. */
#define FIXED_MAX_BUCKET 100

/* A histogram key with no labels: the bucket alone. */
struct hist_key {
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} truth_calls_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} truth_percpu_calls_total SEC(".maps");

#define HISTOGRAM_MAP(name, map_type, max_bucket)                                      \
	struct {                                                                       \
		__uint(type, map_type);                                                \
		__uint(max_entries, (max_bucket) + 3);                                 \
		__type(key, struct hist_key);                                          \
		__type(value, u64);                                                    \
	} name SEC(".maps")

HISTOGRAM_MAP(truth_exp2, BPF_MAP_TYPE_HASH, EXP2_MAX_BUCKET);
HISTOGRAM_MAP(truth_exp2zero, BPF_MAP_TYPE_HASH, EXP2ZERO_MAX_BUCKET);
HISTOGRAM_MAP(truth_linear, BPF_MAP_TYPE_HASH, LINEAR_MAX_BUCKET);
HISTOGRAM_MAP(truth_fixed, BPF_MAP_TYPE_HASH, FIXED_MAX_BUCKET);
HISTOGRAM_MAP(truth_exp2_percpu, BPF_MAP_TYPE_PERCPU_HASH, EXP2_MAX_BUCKET);

/* Slots of truth_slot_calls_total: truth_observe(v) counts in v % SLOTS. */
#define SLOTS 4

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLOTS);
	__type(key, u32);
	__type(value, u64);
} truth_slot_calls_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, s64);
} truth_gauge SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u64);
	__type(value, u64);
} truth_cgroup_calls_total SEC(".maps");

/* Key of truth_strings_total: the text, truncated, NUL-padded. */
struct text_key {
	char text[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct text_key);
	__type(value, u64);
} truth_strings_total SEC(".maps");

/* Addresses in network byte order, as the kernel keeps them. */
struct ipv4_key {
	u8 address[4];
};

struct ipv6_key {
	u8 address[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ipv4_key);
	__type(value, u64);
} truth_ipv4_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ipv6_key);
	__type(value, u64);
} truth_ipv6_total SEC(".maps");

volatile s64 truth_last_value;
s64 truth_generation = 7;

/* The smallest of 1, 5, 10, 50, 100 that is >= value; above 100, the value
 * itself, which record_histogram counts as overflow. */
static __always_inline u64 fixed_bucket(u64 value)
{
	if (value <= 1)
		return 1;
	if (value <= 5)
		return 5;
	if (value <= 10)
		return 10;
	if (value <= 50)
		return 50;
	if (value <= FIXED_MAX_BUCKET)
		return FIXED_MAX_BUCKET;
	return value;
}

SEC("uprobe")
int BPF_UPROBE(observe, u64 value)
{
	struct hist_key key = {};
	u32 zero = 0, slot = value % SLOTS;
	u64 cgroup = bpf_get_current_cgroup_id();

	increment_map(&truth_calls_total, &value, 1);
	increment_map(&truth_cgroup_calls_total, &cgroup, 1);
	increment_map(&truth_percpu_calls_total, &zero, 1);
	increment_map(&truth_slot_calls_total, &slot, 1);
	record_exp2_histogram(&truth_exp2, key, value, EXP2_MAX_BUCKET);
	record_exp2zero_histogram(&truth_exp2zero, key, value, EXP2ZERO_MAX_BUCKET);
	record_linear_histogram(&truth_linear, key, value, LINEAR_MAX_BUCKET);
	record_histogram(&truth_fixed, key, fixed_bucket(value), value, FIXED_MAX_BUCKET);
	record_exp2_histogram(&truth_exp2_percpu, key, value, EXP2_MAX_BUCKET);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(gauge_set, s64 value)
{
	u32 zero = 0;

	bpf_map_update_elem(&truth_gauge, &zero, &value, BPF_ANY);
	truth_last_value = value;
	__sync_fetch_and_add(&truth_generation, 1);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(string_seen, const char *text)
{
	struct text_key key = {};

	if (bpf_probe_read_user_str(key.text, sizeof(key.text), text) < 0)
		return 0;
	increment_map(&truth_strings_total, &key, 1);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(ip_seen, const u8 *address, int len)
{
	if (len == 4) {
		struct ipv4_key key;

		if (bpf_probe_read_user(&key, sizeof(key), address))
			return 0;
		increment_map(&truth_ipv4_total, &key, 1);
	} else if (len == 16) {
		struct ipv6_key key;

		if (bpf_probe_read_user(&key, sizeof(key), address))
			return 0;
		increment_map(&truth_ipv6_total, &key, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
