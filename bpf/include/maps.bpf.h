/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Map helpers shared by the programs in bpf/.
 *
 * increment_map() is the atomic "count by key" every counter program needs:
 * BCC's lookup-then-update loses increments when two CPUs race on a new key,
 * and a plain `(*v)++` loses them on shared (non per-CPU) maps.
 */
#ifndef BPF_EXPORTER_MAPS_BPF_H
#define BPF_EXPORTER_MAPS_BPF_H

#include <bpf/bpf_helpers.h>

/* Errno values the helpers can return; vmlinux.h carries no #defines. */
#ifndef EEXIST
#define EEXIST 17 /* include/uapi/asm-generic/errno-base.h */
#endif

/*
 * Adds `by` to the u64 value stored under `key`, creating the entry at zero
 * first. Works for every hash and array map type; on per-CPU maps the atomic
 * add is uncontended. Returns 0, or a negative errno when the map is full.
 */
static __always_inline long increment_map(void *map, const void *key, __u64 by)
{
	__u64 *count = bpf_map_lookup_elem(map, key);
	if (!count) {
		__u64 zero = 0;
		long err = bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		if (err && err != -EEXIST)
			return err;
		count = bpf_map_lookup_elem(map, key);
		if (!count)
			return -EEXIST;
	}
	__sync_fetch_and_add(count, by);
	return 0;
}

#endif /* BPF_EXPORTER_MAPS_BPF_H */
