// SPDX-License-Identifier: GPL-2.0
/*
 * biolatency: block I/O latency, from the moment a request is issued to the
 * device driver until it completes, per disk and operation (bcc's
 * biolatency -D, and ebpf_exporter's biolatency example).
 *
 * Hooks: tp_btf/block_rq_issue    notes the issue time per request
 *        tp_btf/block_rq_complete records the time to completion
 *        (include/trace/events/block.h; BTF-typed tracepoints, so the
 *        request is read in place. The one-argument block_rq_issue is
 *        Linux 5.11+.)
 * Maps:  bio_latency_start (HASH, struct request * -> u64 issue time, ns)
 *        bio_latency_seconds (HASH, {u32 device, u32 operation, u32 bucket}
 *        -> u64) -> ebpf_bio_latency_seconds{device, operation},
 *        exp2 buckets of 2^i µs.
 *
 * The device is the whole disk (partitions are counted with their disk) as
 * userspace's new_encode_dev() packs it, which the majorminor decoder reads.
 * Requests completed without being issued here (the flush machinery ends
 * empty PREFLUSH writes itself; requests in flight at attach time) have no
 * start time and are not recorded.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "histogram.bpf.h"

/* Buckets 0..26: up to 2^26 µs (~67 s); slower requests land in overflow. */
#define MAX_BUCKET 26

/* The low bits of cmd_flags are the operation (include/linux/blk_types.h:
 * REQ_OP_BITS 8, REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)). */
#define REQ_OP_BITS 8
#define REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)

/* (device, operation) pairs: say 256 disks with read, write, flush, discard. */
#define MAX_SERIES 1024

/* Requests in flight at once, machine-wide. */
#define MAX_REQUESTS 32768

struct bio_latency_key {
	u32 device;
	u32 operation;
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_REQUESTS);
	__type(key, struct request *);
	__type(value, u64);
} bio_latency_start SEC(".maps");

/* (MAX_BUCKET + 3) slots per series: buckets, sum, overflow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (MAX_BUCKET + 3) * MAX_SERIES);
	__type(key, struct bio_latency_key);
	__type(value, u64);
} bio_latency_seconds SEC(".maps");

/* Before Linux 5.17 a request named its disk itself (block/blk-mq.c). */
struct request___rq_disk {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *request_disk(struct request *rq)
{
	struct request___rq_disk *old = (void *)rq;

	if (bpf_core_field_exists(old->rq_disk))
		return BPF_CORE_READ(old, rq_disk);
	return BPF_CORE_READ(rq, q, disk);
}

/*
 * MKDEV(major, minor) as new_encode_dev() writes it for userspace
 * (include/linux/kdev_t.h): minor's low byte, then 12 bits of major, then
 * the rest of minor.
 */
static __always_inline u32 encode_dev(u32 major, u32 minor)
{
	return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffU) << 12);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue, struct request *rq)
{
	u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&bio_latency_start, &rq, &ts, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	struct bio_latency_key key = {};
	struct gendisk *disk;
	u64 *start, delta_us;

	start = bpf_map_lookup_elem(&bio_latency_start, &rq);
	if (!start)
		return 0;
	/* Rounded up, so a request lands in a bucket whose bound it does not
	 * exceed; the sum is high by under 1 µs per request. */
	delta_us = (bpf_ktime_get_ns() - *start + 999) / 1000;
	bpf_map_delete_elem(&bio_latency_start, &rq);

	disk = request_disk(rq);
	if (disk)
		key.device = encode_dev(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor));
	key.operation = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
	record_exp2_histogram(&bio_latency_seconds, key, delta_us, MAX_BUCKET);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
