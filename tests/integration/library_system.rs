//! The machine-wide system programs (syscall_errors, softirqs, page_faults)
//! on the real kernel. Syscall errors are held to exact counts, for
//! syscalls and errors nothing else on a test machine produces. Softirqs
//! and page faults happen on every CPU all the time, for every process, so
//! those tests hold the counts to what the test itself caused: at least
//! that many, and for page faults also not much more.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use bpf_exporter::metrics::{Snapshot, Value};

use crate::common::*;

const SYSCALL_ERRORS: &str = "ebpf_syscall_errors_total";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `sched_get_priority_max(-1)`, `n` times: EINVAL each time. Other tests
/// ask for a valid policy, which succeeds; nothing asks about policy -1.
fn invalid_priority_queries(n: u64) {
    for _ in 0..n {
        // SAFETY: a query with no memory arguments.
        let ret = unsafe { libc::sched_get_priority_max(-1) };
        assert_eq!((ret, errno()), (-1, libc::EINVAL));
    }
}

/// Failures of `syscall` between two reads, by errno; errnos whose count
/// did not move are left out.
fn errors_by_errno(before: &Snapshot, after: &Snapshot, syscall: &str) -> BTreeMap<String, u64> {
    let counts = |snapshot: &Snapshot| -> BTreeMap<String, u64> {
        series(snapshot, SYSCALL_ERRORS)
            .into_iter()
            .filter_map(|(labels, value)| match (labels.as_slice(), value) {
                ([name, errno], Value::Counter(n)) if name == syscall => Some((errno.clone(), n)),
                _ => None,
            })
            .collect()
    };
    let before = counts(before);
    counts(after)
        .into_iter()
        .map(|(errno, n)| {
            let grown = n - before.get(&errno).copied().unwrap_or(0);
            (errno, grown)
        })
        .filter(|(_, grown)| *grown > 0)
        .collect()
}

#[test]
fn syscall_errors_counts_each_failed_call_under_its_syscall_and_errno_exactly() {
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["syscall_errors"]);
    let before = reader.read();

    invalid_priority_queries(1000);
    // sched_getparam() fails three ways, each with its own errno
    // (kernel/sched/syscalls.c), and succeeds for this process; the
    // successes must not count. Nothing else on a test machine calls it.
    let mut param = libc::sched_param { sched_priority: 0 };
    // The first pages are never mapped (vm.mmap_min_addr).
    let unmapped = 8 as *mut libc::sched_param;
    let calls: [(libc::pid_t, *mut libc::sched_param, i32, u64); 4] = [
        (-1, &mut param, libc::EINVAL, 300),
        // Beyond PID_MAX_LIMIT (2^22): no such process.
        (i32::MAX, &mut param, libc::ESRCH, 200),
        (0, unmapped, libc::EFAULT, 100),
        (0, &mut param, 0, 400),
    ];
    for (pid, param, want, n) in calls {
        for _ in 0..n {
            // SAFETY: the kernel checks `param` before writing through it;
            // an unmapped one fails with EFAULT.
            let ret = unsafe { libc::sched_getparam(pid, param) };
            let got = if ret == 0 { 0 } else { errno() };
            assert_eq!(got, want, "sched_getparam({pid}, {param:?})");
        }
    }
    // lseek() on /proc/<pid>/mem returns any position it is given
    // (fs/proc/base.c mem_lseek()), negative ones included. -4096 is such
    // a result, not an error; -4095 reads as errno 4095 to the C library
    // and to the program alike.
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let fd = mem.as_raw_fd();
    for _ in 0..50 {
        // SAFETY: lseek only moves the descriptor's position.
        let (below, boundary) = unsafe {
            (
                libc::lseek(fd, -4096, libc::SEEK_SET),
                libc::lseek(fd, -4095, libc::SEEK_SET),
            )
        };
        assert_eq!((below, boundary, errno()), (-4096, -1, 4095));
    }

    let after = reader.read();
    let errors = |syscall| errors_by_errno(&before, &after, syscall);
    assert_eq!(
        errors("sched_get_priority_max"),
        BTreeMap::from([("EINVAL".to_string(), 1000)])
    );
    assert_eq!(
        errors("sched_getparam"),
        BTreeMap::from([
            ("EFAULT".to_string(), 100),
            ("EINVAL".to_string(), 300),
            ("ESRCH".to_string(), 200),
        ])
    );
    // Other processes' lseek() calls fail too (ESPIPE on pipes): only the
    // two values the test made are checked.
    let lseek = errors("lseek");
    assert_eq!(lseek.get("unknown:4095"), Some(&50), "{lseek:?}");
    assert_eq!(lseek.get("unknown:4096"), None, "{lseek:?}");
}

const SOFTIRQ_SERVICE: &str = "ebpf_softirq_service_seconds";

/// The kinds of include/linux/interrupt.h, as configs/softirqs.yaml names
/// them.
const SOFTIRQ_KINDS: [&str; 10] = [
    "hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu",
];

/// Softirqs run on every CPU for the whole machine, so nothing here is
/// exact: the test's own traffic and timeouts set lower bounds, and the
/// rest is checked for shape (known kinds, consistent buckets, plausible
/// durations).
#[test]
fn softirqs_times_the_net_rx_and_timer_runs_the_test_causes() {
    if !bpf_available() {
        return;
    }
    const DATAGRAMS: u64 = 2000;
    const TIMEOUTS: u64 = 50;
    std::thread::spawn(|| {
        private_loopback();
        let mut reader = start(&["softirqs"]);
        let before = reader.read();

        // Each datagram sent on lo is queued to the sending CPU's backlog
        // and delivered by a net_rx run (net/core/dev.c enqueue_to_backlog()).
        // The next one leaves only once this one arrived, so runs can
        // share datagrams only when a run is still going as the next
        // arrives: at least half of them get their own, with room to spare.
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..DATAGRAMS {
            sender
                .send_to(b"softirq", receiver.local_addr().unwrap())
                .unwrap();
            assert_eq!(receiver.recv(&mut buf).unwrap(), 7);
        }
        // A receive timeout sleeps on a timer_list timer (schedule_timeout(),
        // kernel/time/sleep_timeout.c), which expires in a timer softirq
        // run. Each is started after the last expired: one run each.
        receiver
            .set_read_timeout(Some(std::time::Duration::from_millis(1)))
            .unwrap();
        for _ in 0..TIMEOUTS {
            let err = receiver.recv(&mut buf).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        }

        let after = reader.read();
        let kinds: Vec<String> = series(&after, SOFTIRQ_SERVICE)
            .into_keys()
            .map(|labels| labels.join(","))
            .collect();
        assert!(
            kinds.iter().all(|k| SOFTIRQ_KINDS.contains(&k.as_str())),
            "unknown softirq kinds in {kinds:?}"
        );
        let grown = |kind: &str| {
            let labels = [("kind", kind)];
            let now = histogram(&after, SOFTIRQ_SERVICE, &labels);
            assert_consistent_exp2(&now, 1e-9, 8..=26);
            let grown = delta(&now, find_histogram(&before, SOFTIRQ_SERVICE, &labels).as_ref());
            assert!(
                grown.buckets.iter().all(|(_, n)| *n <= grown.count),
                "{kind}: {grown:?}"
            );
            // Nanoseconds read as seconds: a run takes over 100 ns and,
            // on average, well under 10 ms.
            let mean = grown.sum / grown.count as f64;
            assert!((1e-7..1e-2).contains(&mean), "{kind}: mean {mean} s in {grown:?}");
            grown.count
        };
        let net_rx = grown("net_rx");
        assert!(
            net_rx >= DATAGRAMS / 2,
            "net_rx ran {net_rx} times for {DATAGRAMS} datagrams"
        );
        let timer = grown("timer");
        assert!(
            timer >= TIMEOUTS,
            "timer ran {timer} times for {TIMEOUTS} timeouts"
        );
    })
    .join()
    .unwrap();
}
