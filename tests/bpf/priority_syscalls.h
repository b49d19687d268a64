/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The syscalls the test programs are driven by: sched_get_priority_max and
 * sched_get_priority_min, whose one argument (an int policy) the tests set
 * to values no one else asks for. Numbers from
 * arch/x86/entry/syscalls/syscall_64.tbl and
 * include/uapi/asm-generic/unistd.h (arm64).
 */
#ifndef PRIORITY_SYSCALLS_H
#define PRIORITY_SYSCALLS_H

#if defined(__TARGET_ARCH_arm64)
#define NR_PRIORITY_MAX 125
#define NR_PRIORITY_MIN 126
#else
#define NR_PRIORITY_MAX 146
#define NR_PRIORITY_MIN 147
#endif

#endif
