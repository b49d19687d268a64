// SPDX-License-Identifier: GPL-2.0
/*
 * oomkills: tasks the OOM killer chose to kill, by the cgroup they ran in
 * (bcc's oomkill and ebpf_exporter's oomkill example, counted in the kernel).
 *
 * Hook: tp_btf/mark_victim, which fires once per victim when the OOM killer
 *       marks it, whether the OOM was machine-wide or confined to a memory
 *       cgroup (mm/oom_kill.c mark_oom_victim(), include/trace/events/oom.h).
 *       The BTF-typed tracepoint hands over the victim task itself; the
 *       task that ran into the OOM (current) is often another one.
 * Maps: oom_kills_total (LRU_HASH, u64 cgroup id -> u64 count)
 *       -> ebpf_oom_kills_total{cgroup}, the id resolved to a path under
 *       /sys/fs/cgroup by the cgroup decoder.
 *
 * The cgroup is the victim's cgroup in the unified (v2) hierarchy, by the id
 * of its kernfs node: the id bpf_get_current_cgroup_id() gives for that
 * task, the inode number of its directory on a cgroup2 mount, and the id
 * name_to_handle_at() returns for it. With the memory controller on a v1
 * hierarchy the memory cgroup may differ; the v2 cgroup still names the
 * workload.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

/* One series per cgroup that lost a task to the OOM killer. LRU: on a host
 * whose cgroups come and go, the cgroups killed in least recently make room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} oom_kills_total SEC(".maps");

/* TP_PROTO(struct task_struct *task, uid_t uid) since Linux 6.9 (commit
 * 72ba14deb40a, "mm: update mark_victim tracepoints fields"); before it the
 * tracepoint passed only the pid. */
SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim, struct task_struct *task, uid_t uid)
{
	u64 cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);

	increment_map(&oom_kills_total, &cgroup_id, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
