/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * log2() and log2l(), under the names and with the meaning programs written
 * for ebpf_exporter (and bcc's libbpf-tools) expect from their bits.bpf.h:
 * floor(log2(v)), with 0 for 0.
 *
 * The include guard is theirs too, so a program that brings its own copy
 * of bits.bpf.h along builds with whichever is included first.
 */
#ifndef __BITS_BPF_H
#define __BITS_BPF_H

#include <bpf/bpf_helpers.h>

/* Branch-free halving, which the verifier walks in one pass. */
static __always_inline __u64 log2l(__u64 v)
{
	__u64 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 log2(__u32 v)
{
	return log2l(v);
}

#endif /* __BITS_BPF_H */
