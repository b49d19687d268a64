// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * usdt_target: a process with two USDT probes of SystemTap's <sys/sdt.h>
 * (Debian's systemtap-sdt-dev), for tests/objects/usdt_probes.bpf.c.
 * `usdt_target N` fires bpfx:tick N times, with 1 to N, then bpfx:tock
 * once, and exits 0. Compiled by the test that runs it.
 */
#include <stdlib.h>
#include <sys/sdt.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 0;

	for (long i = 1; i <= n; i++)
		DTRACE_PROBE1(bpfx, tick, i);
	DTRACE_PROBE(bpfx, tock);
	return 0;
}
