// SPDX-License-Identifier: GPL-2.0
/*
 * USDT probes attached from their sections, for objects.rs. tick counts
 * bpfx:tick of tests/target/usdt_target.c in usdt_ticks_total and adds
 * up its argument in usdt_tick_args_total. The other programs name what
 * cannot attach, each for an error that says why: a binary without USDT
 * notes, a script found on PATH, a probe the binary lacks, a binary that
 * is nowhere.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

u64 usdt_ticks_total = 0;
u64 usdt_tick_args_total = 0;

SEC("usdt/bpfx_usdt_target:bpfx:tick")
int BPF_USDT(tick, long n)
{
	__sync_fetch_and_add(&usdt_ticks_total, 1);
	__sync_fetch_and_add(&usdt_tick_args_total, n);
	return 0;
}

SEC("usdt/bpfx_usdt_plain:bpfx:tick")
int BPF_USDT(no_notes)
{
	return 0;
}

SEC("usdt/bpfx_usdt_shim:bpfx:tick")
int BPF_USDT(shim)
{
	return 0;
}

SEC("usdt/bpfx_usdt_target:bpfx:no_such_probe")
int BPF_USDT(missing_probe)
{
	return 0;
}

SEC("usdt/bpfx_usdt_missing:bpfx:tick")
int BPF_USDT(missing_binary)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
