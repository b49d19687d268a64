/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Histogram helpers: a histogram is a map whose key struct ends in a
 * `bucket` field; the exporter turns it into a Prometheus histogram
 * (`metrics.histograms[]` in the config, same layout as ebpf_exporter).
 * record_exp2_histogram(), record_exp2zero_histogram(),
 * record_linear_histogram() and record_histogram() are named apart from
 * the increment_*_histogram() of maps.bpf.h, which keep ebpf_exporter's
 * bucketing for the programs written for it.
 *
 * Key layout, per label set:
 *   bucket 0 .. max_bucket   one count per bucket
 *   bucket max_bucket + 1    the sum of every recorded value (`_sum`)
 *   bucket max_bucket + 2    values above the top bucket (only in `+Inf`)
 * so a map needs (max_bucket + 3) entries per label set.
 *
 * Two things differ from ebpf_exporter's helpers, on purpose:
 * - A value above the top bucket is counted in its own overflow slot.
 *   Clamping it into the top bucket (as ebpf_exporter does) makes `+Inf`
 *   always equal the top bucket and hides the tail.
 * - exp2 bucketing is ceil(log2): bucket i holds values in (2^(i-1), 2^i],
 *   matching its exported bound `le = 2^i`. floor(log2) would put 3 in the
 *   bucket labelled `le="2"`.
 * Configs written for ebpf_exporter read these maps unchanged.
 */
#ifndef BPF_EXPORTER_HISTOGRAM_BPF_H
#define BPF_EXPORTER_HISTOGRAM_BPF_H

#include "maps.bpf.h"

/* ceil(log2(v)), with 0 and 1 both in bucket 0 (le = 1). */
static __always_inline __u64 log2_ceil(__u64 v)
{
	return v <= 1 ? 0 : log2l(v - 1) + 1;
}

/*
 * Records `value` in bucket `index` of the label set in `key`: the count in
 * that bucket (or in the overflow slot when it is above `max_bucket`) and
 * the value in the sum slot. `index` is compared as a u64 before it is
 * stored, so a narrow `bucket` field cannot wrap an overflow into a low
 * bucket. Used directly for `bucket_type: fixed`: the program picks the
 * bucket key and `max_bucket` is the last of `bucket_keys`.
 */
#define record_histogram(map, key, index, value, max_bucket)                           \
	do {                                                                           \
		__u64 __b = (index), __val = (value);                                  \
		(key).bucket = __b > (max_bucket) ? (max_bucket) + 2 : __b;            \
		increment_map(map, &(key), 1);                                         \
		if (__val) {                                                           \
			(key).bucket = (max_bucket) + 1;                               \
			increment_map(map, &(key), __val);                             \
		}                                                                      \
	} while (0)

/* `bucket_type: exp2`: bucket i holds (2^(i-1), 2^i]; 0 and 1 in bucket 0. */
#define record_exp2_histogram(map, key, value, max_bucket)                             \
	do {                                                                           \
		__u64 __v = (value);                                                   \
		record_histogram(map, key, log2_ceil(__v), __v, max_bucket);           \
	} while (0)

/* `bucket_type: exp2zero`: bucket 0 holds 0, bucket i >= 1 (2^(i-2), 2^(i-1)]. */
#define record_exp2zero_histogram(map, key, value, max_bucket)                         \
	do {                                                                           \
		__u64 __v = (value);                                                   \
		record_histogram(map, key, __v == 0 ? 0 : log2_ceil(__v) + 1, __v, max_bucket); \
	} while (0)

/*
 * `bucket_type: linear`: bucket i holds the value i, so `value` must already
 * be in the histogram's unit (say queue length, or milliseconds rounded up);
 * the config's bucket_multiplier scales both the bounds and the sum.
 */
#define record_linear_histogram(map, key, value, max_bucket)                           \
	do {                                                                           \
		__u64 __v = (value);                                                   \
		record_histogram(map, key, __v, __v, max_bucket);                      \
	} while (0)

#endif /* BPF_EXPORTER_HISTOGRAM_BPF_H */
