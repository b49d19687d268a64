//! The machine-wide system programs (syscall_errors, softirqs, page_faults)
//! on the real kernel. Syscall errors are held to exact counts, for
//! syscalls and errors nothing else on a test machine produces. Softirqs
//! and page faults happen on every CPU all the time, for every process, so
//! those tests hold the counts to what the test itself caused: at least
//! that many, and for page faults also not much more.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use bpf_exporter::config::Source;
use bpf_exporter::exporter::{self, Exporter};
use bpf_exporter::metrics::{ConfigState, Snapshot, Value};

use crate::common::*;
use crate::workload::*;

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
        udp_round_trips(DATAGRAMS);
        // Each timeout expires in a timer softirq run of its own.
        receive_timeouts(TIMEOUTS);

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

/// The tests of configs/page_faults.yaml, whose tracepoints are x86's.
#[cfg(target_arch = "x86_64")]
mod page_faults {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd};

    use crate::common::*;

    const PAGE_FAULTS: &str = "ebpf_page_faults_total";
    /// Pages touched per try, each faulting once.
    const PAGES: usize = 4096;
    /// Other processes fault too, during a try: they may add this many and
    /// the try still passes. Counting the test's faults twice would not.
    const SLACK: u64 = PAGES as u64 / 2;
    /// Tries for one quiet enough to pass the upper bound; each must pass
    /// the lower one.
    const TRIES: usize = 5;

    /// Origin and access labels, and what faults once per page that way.
    type FaultCase = (&'static str, &'static str, fn(usize));

    #[test]
    fn page_faults_counts_each_first_touch_under_its_origin_and_access() {
        if !bpf_available() {
            return;
        }
        let mut reader = start(&["page_faults"]);
        let cases: [FaultCase; 5] = [
            ("user", "write", user_writes),
            ("user", "read", user_reads),
            ("user", "exec", user_execs),
            ("kernel", "write", kernel_writes),
            ("kernel", "read", kernel_reads),
        ];
        let kernel_exec = [("origin", "kernel"), ("access", "exec")];
        let kernel_exec_before = counter(&reader.read(), PAGE_FAULTS, &kernel_exec);
        for (origin, access, fault) in cases {
            let labels = [("origin", origin), ("access", access)];
            let mut counted = Vec::new();
            for _ in 0..TRIES {
                let before = counter(&reader.read(), PAGE_FAULTS, &labels);
                fault(PAGES);
                let grown = counter(&reader.read(), PAGE_FAULTS, &labels) - before;
                counted.push(grown);
                assert!(
                    grown >= PAGES as u64,
                    "{origin}/{access}: {counted:?} for {PAGES} pages"
                );
                if grown < PAGES as u64 + SLACK {
                    break;
                }
            }
            assert!(
                counted.iter().any(|&n| n < PAGES as u64 + SLACK),
                "{origin}/{access}: {counted:?} for {PAGES} pages, never below {PAGES} + {SLACK}"
            );
        }
        // The kernel never fetches instructions from a page that is not
        // there; none of the faults above may land here.
        assert_eq!(
            counter(&reader.read(), PAGE_FAULTS, &kernel_exec),
            kernel_exec_before
        );
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    /// Fresh anonymous memory, never touched; unmapped on drop.
    struct Mapping {
        addr: *mut u8,
        len: usize,
    }

    impl Mapping {
        /// `pages` pages with protection `prot`, in small pages only: a
        /// huge or large folio would serve many pages with one fault.
        fn anonymous(pages: usize, prot: i32) -> Mapping {
            let len = pages * page_size();
            // SAFETY: a new private mapping at an address the kernel picks.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(
                addr,
                libc::MAP_FAILED,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
            let mapping = Mapping {
                addr: addr.cast(),
                len,
            };
            // SAFETY: advice on the mapping just made.
            let ret = unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
            assert_eq!(ret, 0, "madvise: {}", std::io::Error::last_os_error());
            mapping
        }

        fn page(&self, i: usize) -> *mut u8 {
            assert!(i * page_size() < self.len);
            // SAFETY: inside the mapping, checked above.
            unsafe { self.addr.add(i * page_size()) }
        }

        /// The whole mapping as bytes, for the kernel to read or write
        /// through a syscall.
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is `len` bytes, readable (for the kernel
            // too) as zeros until written, and borrowed mutably here.
            unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `anonymous`, no longer used.
            unsafe { libc::munmap(self.addr.cast(), self.len) };
        }
    }

    /// A write to a page not yet there allocates it.
    fn user_writes(pages: usize) {
        let memory = Mapping::anonymous(pages, libc::PROT_READ | libc::PROT_WRITE);
        for i in 0..pages {
            // SAFETY: a byte inside the writable mapping.
            unsafe { memory.page(i).write_volatile(1) };
        }
    }

    /// A read of an anonymous page not yet there maps the shared zero page.
    fn user_reads(pages: usize) {
        let memory = Mapping::anonymous(pages, libc::PROT_READ);
        for i in 0..pages {
            // SAFETY: a byte inside the readable mapping.
            unsafe { memory.page(i).read_volatile() };
        }
    }

    /// The kernel writes every page of a fresh buffer (read_zero(),
    /// drivers/char/mem.c, clears it in user space page by page).
    fn kernel_writes(pages: usize) {
        let mut memory = Mapping::anonymous(pages, libc::PROT_READ | libc::PROT_WRITE);
        std::fs::File::open("/dev/zero")
            .unwrap()
            .read_exact(memory.bytes())
            .unwrap();
    }

    /// The kernel reads every page of a fresh buffer, copying it into a
    /// pipe (pipe_write(), fs/pipe.c) that a thread drains. Not a write to
    /// a file: that first tries each copy with page faults disabled, and
    /// the fault refused there counts too, before the one that maps the
    /// page (generic_perform_write(), mm/filemap.c).
    fn kernel_reads(pages: usize) {
        let mut memory = Mapping::anonymous(pages, libc::PROT_READ);
        let (mut rx, mut tx) = pipe();
        let drain = std::thread::spawn(move || std::io::copy(&mut rx, &mut std::io::sink()).unwrap());
        tx.write_all(memory.bytes()).unwrap();
        drop(tx);
        assert_eq!(drain.join().unwrap(), (pages * page_size()) as u64);
    }

    /// Calls into pages of a file that are cached but not mapped yet: one
    /// instruction fetch fault each. Each page is a mapping of its own,
    /// apart from the next: on a fault the kernel also maps the file's
    /// cached neighbours (fault-around, mm/memory.c), but never beyond the
    /// mapping.
    fn user_execs(pages: usize) {
        const RET: u8 = 0xc3;
        let page = page_size();
        let mut code = memfd();
        code.write_all(&vec![RET; pages * page]).unwrap();
        let area = Mapping::anonymous(2 * pages, libc::PROT_NONE);
        for i in 0..pages {
            let at = area.page(2 * i);
            // SAFETY: replaces one page of `area`, which owns that range.
            let addr = unsafe {
                libc::mmap(
                    at.cast(),
                    page,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    code.as_raw_fd(),
                    (i * page) as libc::off_t,
                )
            };
            assert_eq!(addr, at.cast(), "mmap: {}", std::io::Error::last_os_error());
        }
        for i in 0..pages {
            // SAFETY: the page holds `ret` instructions, executable.
            let function: extern "C" fn() = unsafe { std::mem::transmute(area.page(2 * i)) };
            function();
        }
    }

    fn memfd() -> std::fs::File {
        // SAFETY: a new anonymous file; the name is NUL-terminated.
        let fd = unsafe { libc::memfd_create(c"bpf-exporter-page-faults".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }
}

/// tests/bpf/missing_hooks.bpf.c: every program on a hook this kernel
/// lacks, as page_faults' are on a kernel that is not x86.
fn missing_hooks_source() -> Source {
    Source {
        name: "missing_hooks".into(),
        origin: "test:missing_hooks.yaml".into(),
        text: "metrics:\n  counters:\n    - name: missing_hooks_total\n      help: Never counted.\n".into(),
        ..Default::default()
    }
}

#[test]
fn a_config_on_tracepoints_the_kernel_lacks_fails_alone_and_says_so() {
    if !bpf_available() {
        return;
    }
    let mut sources = embedded_sources(&["syscall_errors".to_string()]);
    sources.push(missing_hooks_source());
    let (mut reader, _) = Exporter::with_sources(&sources);
    let statuses = reader.statuses();
    let report = exporter::report(&statuses);
    let status = |name: &str| {
        statuses
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no status for {name}:\n{report}"))
    };
    assert_eq!(status("syscall_errors").state, ConfigState::Running, "{report}");
    let missing = status("missing_hooks");
    assert_eq!(missing.state, ConfigState::Failed, "{report}");
    assert_eq!(missing.programs.len(), 3, "{report}");
    for program in &missing.programs {
        let error = program.error.as_deref().unwrap_or_default();
        assert!(!program.attached, "{report}");
        assert!(
            error.contains("this kernel has no such tracepoint or function")
                && error.contains("no_such_tracepoint"),
            "{}: {error}",
            program.name
        );
    }

    let labels = [("syscall", "sched_get_priority_max"), ("errno", "EINVAL")];
    let before = counter(&reader.read(), SYSCALL_ERRORS, &labels);
    invalid_priority_queries(10);
    assert_eq!(counter(&reader.read(), SYSCALL_ERRORS, &labels) - before, 10);
}
