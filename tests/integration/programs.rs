//! The shipped histogram programs, and the counters whose events take some
//! setting up (timers, OOM kills, TCP retransmissions), on the real kernel:
//! drive a known number of events and check the exported series moved by
//! exactly that much (or, where the kernel or the whole machine adds events
//! of its own, at least that much).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use bpf_exporter::metrics::Snapshot;

use crate::common::*;
use crate::workload::*;

const SYSCALL_LATENCY: &str = "ebpf_syscall_latency_seconds";

#[test]
fn syscall_latency_counts_each_call_once_in_the_bucket_of_its_duration() {
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["syscall_latency"]);
    let quick = [("syscall", "sched_get_priority_max")];
    let slow = [("syscall", "rt_sigtimedwait")];
    let before = reader.read();

    // Nothing else on a test machine asks for the maximum SCHED_OTHER
    // priority, or waits for no signal at all with a timeout. (The other
    // tests in this binary call sched_get_priority_min, concurrently.)
    for _ in 0..1000 {
        // SAFETY: a query with no memory arguments.
        unsafe { libc::sched_get_priority_max(libc::SCHED_OTHER) };
    }
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    for _ in 0..10 {
        // An empty set: no signal can end the wait, only the timeout.
        // SAFETY: every pointer is valid for the call; 8 is the size of the
        // kernel's sigset_t on x86_64 and arm64.
        let (ret, err) = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let ret = libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &set,
                std::ptr::null_mut::<libc::siginfo_t>(),
                &timeout,
                8,
            );
            (ret, std::io::Error::last_os_error())
        };
        assert_eq!((ret, err.raw_os_error()), (-1, Some(libc::EAGAIN)), "{err}");
    }

    let after = reader.read();
    let hist = |s: &Snapshot, labels| find_histogram(s, SYSCALL_LATENCY, labels);
    let quick_after = hist(&after, &quick).expect("no sched_get_priority_max series");
    assert_consistent_exp2(&quick_after, 1e-9, 0..=36);
    let quick = delta(&quick_after, hist(&before, &quick).as_ref());
    assert_eq!(quick.count, 1000, "{quick:?}");

    let slow_after = hist(&after, &slow).expect("no rt_sigtimedwait series");
    assert_consistent_exp2(&slow_after, 1e-9, 0..=36);
    let slow = delta(&slow_after, hist(&before, &slow).as_ref());
    assert_eq!(slow.count, 10, "{slow:?}");
    for (le, count) in &slow.buckets {
        if *le < 0.02 {
            assert_eq!(*count, 0, "a 20 ms wait counted at le={le}: {slow:?}");
        }
    }
    assert!(slow.sum >= 0.2, "{slow:?}");
}

#[test]
fn runqlat_counts_every_wakeup_it_waits_on() {
    if !bpf_available() {
        return;
    }
    const CYCLES: u64 = 200;
    let mut reader = start(&["runqlat"]);
    let before = find_histogram(&reader.read(), "ebpf_run_queue_latency_seconds", &[]);

    // Each cycle the main thread sleeps in read() until the helper, which
    // sleeps in read() itself meanwhile, answers: two wakeups per cycle.
    let (ping_rx, ping_tx) = pipe();
    let (pong_rx, pong_tx) = pipe();
    let helper = std::thread::spawn(move || {
        let mut byte = [0u8];
        for _ in 0..CYCLES {
            (&ping_rx).read_exact(&mut byte).unwrap();
            // Long enough that the main thread is asleep when woken.
            std::thread::sleep(Duration::from_micros(200));
            (&pong_tx).write_all(&byte).unwrap();
        }
    });
    let mut byte = [7u8];
    for _ in 0..CYCLES {
        (&ping_tx).write_all(&byte).unwrap();
        (&pong_rx).read_exact(&mut byte).unwrap();
    }
    helper.join().unwrap();

    let after = find_histogram(&reader.read(), "ebpf_run_queue_latency_seconds", &[])
        .expect("no run queue latency recorded");
    assert_consistent_exp2(&after, 1e-9, 0..=36);
    let grown = delta(&after, before.as_ref());
    assert!(grown.count >= CYCLES, "{grown:?}");
    assert!(grown.sum > 0.0, "{grown:?}");
    let methods = series(&reader.read(), "bpf_exporter_map_read_duration_seconds");
    assert!(
        methods.contains_key(
            ["runqlat", "run_queue_latency_seconds", "mmap"]
                .map(String::from)
                .as_slice()
        ),
        "its BPF_F_MMAPABLE array is read through the mapping: {methods:?}"
    );
}

#[test]
fn biolatency_counts_each_request_to_a_loop_device_exactly() {
    if !bpf_available() {
        return;
    }
    const READS: u64 = 50;
    const WRITES: u64 = 20;
    let mut reader = start(&["biolatency"]);
    let device = LoopDevice::attach(4 << 20);
    let disk = device.open_direct();
    device.settle(&mut reader);

    let hist = |s: &Snapshot, op: &str| {
        find_histogram(s, BIO_LATENCY, &[("device", &device.name), ("operation", op)])
    };
    let before = reader.read();
    direct_io(&disk, WRITES, READS);
    // Read before the descriptor closes: closing a device opened for writing
    // makes udev (where it runs) probe it, which reads it.
    let after = reader.read();

    let reads_after = hist(&after, "read").expect("no read series for the loop device");
    assert_consistent_exp2(&reads_after, 1e-6, 0..=26);
    let reads = delta(&reads_after, hist(&before, "read").as_ref());
    assert_eq!(reads.count, READS, "{reads:?}");
    assert!(reads.sum > 0.0, "{reads:?}");

    let writes_after = hist(&after, "write").expect("no write series for the loop device");
    assert_consistent_exp2(&writes_after, 1e-6, 0..=26);
    let writes = delta(&writes_after, hist(&before, "write").as_ref());
    assert_eq!(writes.count, WRITES, "{writes:?}");

    // fsync() flushes a write-back cache with one flush request; without a
    // cache it sends none.
    let flushes =
        hist(&after, "flush").map_or(0, |h| h.count) - hist(&before, "flush").map_or(0, |h| h.count);
    let write_back = std::fs::read_to_string(format!("/sys/block/{}/queue/write_cache", device.name))
        .is_ok_and(|mode| mode.trim() == "write back");
    assert_eq!(flushes, u64::from(write_back));
    drop(disk);
}

const TIMER_STARTS: &str = "ebpf_timer_starts_total";

#[test]
fn timers_counts_one_reassembly_timer_per_fragmented_datagram_exactly() {
    if !bpf_available() {
        return;
    }
    const DATAGRAMS: u64 = 100;
    std::thread::spawn(|| {
        private_loopback();
        set_loopback_mtu(1500);
        let mut reader = start(&["timers"]);
        let labels = [("function", "ip_expire")];
        let before = counter(&reader.read(), TIMER_STARTS, &labels);
        // Each datagram leaves in fragments. The receiver's reassembly queue
        // for it starts its expiry timer, ip_expire, once, when the first
        // fragment arrives (net/ipv4/inet_fragment.c inet_frag_create()),
        // and stops it when the datagram is whole. Nothing else on a test
        // machine reassembles IPv4 fragments.
        send_fragmented_datagrams(DATAGRAMS);
        let after = counter(&reader.read(), TIMER_STARTS, &labels);
        assert_eq!(after - before, DATAGRAMS);
    })
    .join()
    .unwrap();
}

/// Sets the MTU of this thread's `lo`: loopback's own (64 KiB) is larger
/// than any UDP datagram, which would then never be fragmented.
fn set_loopback_mtu(mtu: i32) {
    // SAFETY: plain ioctls on a socket fd with a zeroed, named ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_mtu = mtu;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFMTU, &req),
            0,
            "SIOCSIFMTU: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

/// Sends `n` datagrams of 4000 bytes over 127.0.0.1 and receives each whole.
fn send_fragmented_datagrams(n: u64) {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Fragment rather than refuse datagrams over the path MTU.
    let dont = libc::IP_PMTUDISC_DONT;
    // SAFETY: an int option, passed with its size.
    let ret = unsafe {
        libc::setsockopt(
            sender.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&dont as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "IP_MTU_DISCOVER: {}", std::io::Error::last_os_error());
    let datagram = [0x5a; 4000];
    let mut buf = [0u8; 8192];
    for _ in 0..n {
        sender.send_to(&datagram, receiver.local_addr().unwrap()).unwrap();
        assert_eq!(receiver.recv(&mut buf).unwrap(), datagram.len());
    }
}

const OOM_KILLS: &str = "ebpf_oom_kills_total";

#[test]
fn oomkills_counts_the_one_task_killed_in_a_memory_limited_cgroup() {
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["oomkills"]);
    let cgroup = OomCgroup::create(&unique("bpf-exporter-oom"), 32 << 20);
    let labels = [("cgroup", cgroup.path.as_str())];
    let before = counter(&reader.read(), OOM_KILLS, &labels);
    cgroup.oom_kill_a_task();
    let after = counter(&reader.read(), OOM_KILLS, &labels);
    assert_eq!(after - before, 1);
}

const TCP_RETRANSMITS: &str = "ebpf_tcp_retransmits_total";

#[test]
fn tcp_retransmits_counts_a_lost_segment_under_its_connection_for_ipv4_and_ipv6() {
    if !bpf_available() {
        return;
    }
    std::thread::spawn(|| {
        private_loopback();
        let mut reader = start(&["tcp_retransmits"]);
        lose_and_recover(&mut reader, "127.0.0.1:0", "127.0.0.1");
        lose_and_recover(&mut reader, "[::1]:0", "::1");
    })
    .join()
    .unwrap();
}

/// Connects over `listen`, loses everything on `lo` while the client sends,
/// and checks the client's retransmissions are counted under the
/// connection's addresses (printed `addr`) and ports. The count is at least
/// one, not exact: how many retransmissions go out (tail loss probe, then
/// timeouts backing off) depends on timing.
fn lose_and_recover(reader: &mut bpf_exporter::exporter::Exporter, listen: &str, addr: &str) {
    let (mut client, mut server) = connected(listen);
    let client_port = client.local_addr().unwrap().port().to_string();
    let server_port = server.local_addr().unwrap().port().to_string();
    let sent = [
        ("saddr", addr),
        ("daddr", addr),
        ("sport", &client_port),
        ("dport", &server_port),
    ];
    let reverse = [
        ("saddr", addr),
        ("daddr", addr),
        ("sport", &server_port),
        ("dport", &client_port),
    ];
    assert_eq!(
        counter(&reader.read(), TCP_RETRANSMITS, &sent),
        0,
        "{addr}: a new connection"
    );

    retransmit_through_loss(&mut client, &mut server, b"lost, then retransmitted");
    assert!(
        counter(&reader.read(), TCP_RETRANSMITS, &sent) >= 1,
        "{addr}: no retransmission counted"
    );
    // The server sent no data, so it had nothing to retransmit.
    assert_eq!(counter(&reader.read(), TCP_RETRANSMITS, &reverse), 0, "{addr}");
}
