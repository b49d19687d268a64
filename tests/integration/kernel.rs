//! Real programs, real kernel, exact numbers.

use crate::common::*;

/// Calls of this syscall come only from this test: nothing else on a test
/// machine asks for the minimum SCHED_OTHER priority.
fn sched_get_priority_min_calls(n: u64) {
    for _ in 0..n {
        // SAFETY: a query with no memory arguments.
        unsafe { libc::sched_get_priority_min(libc::SCHED_OTHER) };
    }
}

#[test]
fn syscalls_counts_each_call_of_a_syscall_exactly() {
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["syscalls"]);
    let labels = [("syscall", "sched_get_priority_min")];
    let before = counter(&reader.read(), "ebpf_syscalls_total", &labels);
    sched_get_priority_min_calls(1000);
    let after = counter(&reader.read(), "ebpf_syscalls_total", &labels);
    assert_eq!(after - before, 1000);
}
