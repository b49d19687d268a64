// SPDX-License-Identifier: GPL-2.0
/*
 * runqlat: run queue (scheduler) latency, the time a runnable task waits
 * for a CPU, machine-wide (bcc's runqlat).
 *
 * Hooks: tp_btf/sched_wakeup     a woken task becomes runnable
 *        tp_btf/sched_wakeup_new a new task becomes runnable
 *        tp_btf/sched_switch     a preempted task goes back to the queue;
 *                                the incoming task's wait ends
 *        (include/trace/events/sched.h; BTF-typed tracepoints, so tasks
 *        are read in place.)
 * Maps:  run_queue_latency_start (TASK_STORAGE, task -> u64 enqueue time,
 *        ns; 0 while the task is not waiting)
 *        run_queue_latency_seconds (ARRAY, BPF_F_MMAPABLE, u32 bucket ->
 *        u64) -> ebpf_run_queue_latency_seconds, exp2 buckets of 2^i ns.
 *
 * The enqueue time lives in task-local storage, not a hash by thread id:
 * no lock, no bound on the tasks waiting at once, and the kernel frees it
 * with the task. Against the hash it took 10-15% off each wakeup and
 * switch (benches/program_cost.rs, 2-core VM); a new task's first wakeup,
 * which allocates its storage, costs twice as much (~1.35 µs), but new
 * tasks are rare next to switches. Tracing programs
 * may use task storage since Linux 5.11.
 *
 * Idle tasks (thread id 0, one per CPU) are never recorded.
 *
 * The histogram has no labels, so its slots are a fixed set: an array,
 * where a hash would hold them just the same once each is hit (a label-less
 * histogram reads missing slots as zero). Created BPF_F_MMAPABLE, the
 * exporter reads it through its memory mapping, without a syscall.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "histogram.bpf.h"

/* Buckets 0..36: up to 2^36 ns (~68.7 s); longer waits land in overflow. */
#define MAX_BUCKET 36

/* include/linux/sched.h */
#define TASK_RUNNING 0

struct run_queue_latency_key {
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u64);
} run_queue_latency_start SEC(".maps");

/*
 * One label set: (MAX_BUCKET + 3) slots for buckets, sum and overflow. An
 * array's key must be a plain u32 (array_map_check_btf(),
 * kernel/bpf/arraymap.c); run_queue_latency_key is its one field, which
 * histogram.bpf.h's macros set by name.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_BUCKET + 3);
	__type(key, u32);
	__type(value, u64);
} run_queue_latency_seconds SEC(".maps");

/* Before Linux 5.14 task_struct::__state was `volatile long state`. */
struct task_struct___state {
	volatile long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *task)
{
	struct task_struct___state *old = (void *)task;

	if (bpf_core_field_exists(task->__state))
		return BPF_CORE_READ(task, __state);
	return BPF_CORE_READ(old, state);
}

static __always_inline void enqueued(struct task_struct *task)
{
	u64 *ts;

	if (!task->pid)
		return;
	ts = bpf_task_storage_get(&run_queue_latency_start, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (ts)
		*ts = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct run_queue_latency_key key = {};
	u64 *start, delta;

	/* Switched out while still runnable: it waits in the queue again. */
	if (task_state(prev) == TASK_RUNNING)
		enqueued(prev);

	start = bpf_task_storage_get(&run_queue_latency_start, next, 0, 0);
	if (!start || !*start)
		return 0;
	delta = bpf_ktime_get_ns() - *start;
	*start = 0;

	record_exp2_histogram(&run_queue_latency_seconds, key, delta, MAX_BUCKET);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
