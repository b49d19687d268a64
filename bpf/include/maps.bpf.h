/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Map helpers, under the names and with the meaning of ebpf_exporter's
 * maps.bpf.h, so that programs written for it build here unchanged:
 *
 *   increment_map(map, key, by)          adds atomically, creating the
 *                                        entry at zero first
 *   increment_map_nosync(map, key, by)   the same with a plain add, for
 *                                        per-CPU maps and maps only one CPU
 *                                        writes at a time
 *   lookup_or_zero_init_key(map, key, p) p = the entry, created at zero
 *   read_array_ptr(map, key, p)          p = the entry (arrays have every
 *                                        key below max_entries)
 *   increment_exp2_histogram[_nosync](map, key, value, max_bucket)
 *   increment_exp2zero_histogram[_nosync](map, key, value, max_bucket)
 *
 * Both increments return the count after the add (truncated to int), or 0
 * when the map has no room for the key. The two lookup macros make the
 * calling function return 0 when there is no entry.
 *
 * The atomic add is what a counter on a shared map needs: a plain
 * `(*v)++` loses increments when two CPUs add at once, and bcc's
 * lookup-then-update loses them when two CPUs create the same key.
 *
 * The histogram macros keep ebpf_exporter's bucketing, so its configs read
 * the numbers they read there: exp2 puts v in bucket log2l(v) (floor: 3 in
 * bucket 1, exported as le="2"), exp2zero puts 0 in bucket 0 and v in
 * log2l(v) + 1, a bucket above max_bucket counts in max_bucket, and the
 * sum goes to max_bucket + 1. histogram.bpf.h has the overflow-correct
 * ones, for new programs.
 */
#ifndef BPF_EXPORTER_MAPS_BPF_H
#define BPF_EXPORTER_MAPS_BPF_H

#include <bpf/bpf_helpers.h>
#include "bits.bpf.h"

/*
 * The entry under `key`, created at zero first; NULL when the map is full.
 * When two CPUs create the same key at once, the update of one fails and
 * its second lookup finds the other's entry.
 */
static __always_inline __u64 *map_lookup_or_init_zero(void *map, const void *key)
{
	__u64 zero = 0, *value = bpf_map_lookup_elem(map, key);

	if (value)
		return value;
	bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static __always_inline int map_add(void *map, const void *key, __u64 by, int atomic)
{
	__u64 *count = map_lookup_or_init_zero(map, key);

	if (!count)
		return 0;
	if (atomic)
		__sync_fetch_and_add(count, by);
	else
		*count += by;
	return *count;
}

static __always_inline int increment_map(void *map, const void *key, __u64 by)
{
	return map_add(map, key, by, 1);
}

static __always_inline int increment_map_nosync(void *map, const void *key, __u64 by)
{
	return map_add(map, key, by, 0);
}

#define lookup_or_zero_init_key(map, key, into)                                        \
	do {                                                                           \
		(into) = map_lookup_or_init_zero(map, key);                            \
		if (!(into))                                                           \
			return 0;                                                      \
	} while (0)

#define read_array_ptr(map, key, into)                                                 \
	do {                                                                           \
		(into) = bpf_map_lookup_elem(map, key);                                \
		if (!(into))                                                           \
			return 0;                                                      \
	} while (0)

/* ebpf_exporter's exp2zero bucket: 0 for 0, then one past exp2's. */
static __always_inline __u64 exp2zero_bucket(__u64 v)
{
	return v ? log2l(v) + 1 : 0;
}

/*
 * Counts `value` in bucket bucket_of(value), or in `max_bucket` when that
 * is above it, and adds it to the sum at max_bucket + 1 when positive, with
 * `add` (increment_map or increment_map_nosync). `value` keeps its type, so
 * a negative signed one is counted in the top bucket and left out of the
 * sum, as ebpf_exporter does.
 */
#define clamped_histogram(map, key, value, bucket_of, max_bucket, add)                 \
	do {                                                                           \
		__typeof__(value) __clamped_value = (value);                           \
		__u64 __clamped_bucket = bucket_of(__clamped_value);                   \
		(key).bucket = __clamped_bucket > (max_bucket) ? (max_bucket)          \
							       : __clamped_bucket;     \
		add(map, &(key), 1);                                                   \
		if (__clamped_value > 0) {                                             \
			(key).bucket = (max_bucket) + 1;                               \
			add(map, &(key), __clamped_value);                             \
		}                                                                      \
	} while (0)

#define increment_exp2_histogram(map, key, value, max_bucket)                          \
	clamped_histogram(map, key, value, log2l, max_bucket, increment_map)
#define increment_exp2_histogram_nosync(map, key, value, max_bucket)                   \
	clamped_histogram(map, key, value, log2l, max_bucket, increment_map_nosync)
#define increment_exp2zero_histogram(map, key, value, max_bucket)                      \
	clamped_histogram(map, key, value, exp2zero_bucket, max_bucket, increment_map)
#define increment_exp2zero_histogram_nosync(map, key, value, max_bucket)               \
	clamped_histogram(map, key, value, exp2zero_bucket, max_bucket, increment_map_nosync)

#endif /* BPF_EXPORTER_MAPS_BPF_H */
