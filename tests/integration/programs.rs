//! The shipped histogram programs, and the counters whose events take some
//! setting up (timers, OOM kills, TCP retransmissions), on the real kernel:
//! drive a known number of events and check the exported series moved by
//! exactly that much (or, where the kernel or the whole machine adds events
//! of its own, at least that much).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use bpf_exporter::metrics::Snapshot;

use crate::common::*;

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
}

const BIO_LATENCY: &str = "ebpf_bio_latency_seconds";

#[test]
fn biolatency_counts_each_request_to_a_loop_device_exactly() {
    if !bpf_available() {
        return;
    }
    const READS: u64 = 50;
    const WRITES: u64 = 20;
    let mut reader = start(&["biolatency"]);
    let device = LoopDevice::attach(4 << 20);
    let disk = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&device.path)
        .unwrap();
    device.settle(&mut reader);

    let hist = |s: &Snapshot, op: &str| {
        find_histogram(s, BIO_LATENCY, &[("device", &device.name), ("operation", op)])
    };
    let before = reader.read();
    // O_DIRECT, block-aligned, one block at a time: one request each, none
    // merged or served from a cache. Distinct offsets, to be sure.
    let mut block = Box::new(Block([0x5a; 4096]));
    for i in 0..WRITES {
        disk.write_all_at(&block.0, (1 << 20) + i * 8192).unwrap();
    }
    disk.sync_all().unwrap();
    for i in 0..READS {
        disk.read_exact_at(&mut block.0, i * 8192).unwrap();
    }
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

/// A block of memory aligned for O_DIRECT.
#[repr(C, align(4096))]
struct Block([u8; 4096]);

/// A loop device over a sparse, already unlinked file; detached on drop, and
/// by the kernel (autoclear) if the process dies first.
struct LoopDevice {
    /// `loop<N>`, as in /proc/partitions.
    name: String,
    path: String,
    /// Holds the device open; closing the last descriptor detaches it.
    fd: OwnedFd,
}

// include/uapi/linux/loop.h
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// struct loop_info64, include/uapi/linux/loop.h
#[repr(C)]
#[allow(dead_code)] // written by the kernel's layout, not read here
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// struct loop_config, include/uapi/linux/loop.h
#[repr(C)]
#[allow(dead_code)] // read by the kernel only
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

impl LoopDevice {
    fn attach(size: u64) -> LoopDevice {
        let backing_path = std::env::temp_dir().join(format!("bpf-exporter-loop-{}.img", std::process::id()));
        let backing = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&backing_path)
            .unwrap();
        backing.set_len(size).unwrap();
        // The device keeps the file alive; nothing is left behind.
        std::fs::remove_file(&backing_path).unwrap();

        let control = File::open("/dev/loop-control").unwrap();
        // Another process may take the free device first: try again.
        for _ in 0..10 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument.
            let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
            assert!(n >= 0, "LOOP_CTL_GET_FREE: {}", std::io::Error::last_os_error());
            let path = format!("/dev/loop{n}");
            let device = File::options().read(true).write(true).open(&path).unwrap();
            // SAFETY: an all-zero loop_config is valid; fields are set below.
            let mut config: LoopConfig = unsafe { std::mem::zeroed() };
            config.fd = backing.as_raw_fd() as u32;
            config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
            // SAFETY: config is a loop_config that outlives the call.
            if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) } == 0 {
                return LoopDevice {
                    name: format!("loop{n}"),
                    path,
                    fd: device.into(),
                };
            }
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EBUSY),
                "LOOP_CONFIGURE {path}: {err}"
            );
        }
        panic!("no free loop device after 10 tries");
    }

    /// Waits for whatever a new disk sets off (udev probing it, where udev
    /// runs) to finish: until the device's requests stop changing.
    fn settle(&self, reader: &mut bpf_exporter::reader::Reader) {
        let _ = std::process::Command::new("udevadm")
            .args(["settle", "--timeout=10"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let requests = |s: &Snapshot| -> u64 {
            s.families
                .iter()
                .filter(|f| f.name == BIO_LATENCY)
                .flat_map(|f| {
                    let i = f.label_names.iter().position(|n| n == "device").unwrap();
                    f.samples.iter().filter(move |s| s.label_values[i] == self.name)
                })
                .map(|s| match &s.value {
                    bpf_exporter::metrics::Value::Histogram(h) => h.count,
                    _ => 0,
                })
                .sum()
        };
        let mut last = requests(&reader.read());
        let mut quiet = 0;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let now = requests(&reader.read());
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
            if quiet == 5 {
                return;
            }
        }
        panic!("{} is still busy after 5 s", self.name);
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: LOOP_CLR_FD takes no argument. With autoclear set, closing
        // fd would detach it too; this does it now.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), LOOP_CLR_FD) };
    }
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
    use std::os::unix::process::ExitStatusExt;
    if !bpf_available() {
        return;
    }
    let mut reader = start(&["oomkills"]);
    let cgroup = OomCgroup::create(32 << 20);
    let labels = [("cgroup", cgroup.path.as_str())];
    let before = counter(&reader.read(), OOM_KILLS, &labels);
    // tail looks for the last line of an endless file without a newline, so
    // it keeps all it read: the only task of its cgroup, it is the victim.
    let status = cgroup.run("exec tail /dev/zero");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let after = counter(&reader.read(), OOM_KILLS, &labels);
    assert_eq!(after - before, 1);
}

/// A cgroup for one process to run out of memory in: a cgroup v2 directory,
/// which names it (oomkills counts by the v2 cgroup), and a memory limit, on
/// v2 where the memory controller is there and on its v1 hierarchy
/// otherwise (hybrid hosts). Both directories are removed on drop.
struct OomCgroup {
    /// The v2 directory, as the cgroup decoder names it.
    path: String,
    /// The v1 memory cgroup, on hybrid hosts.
    memory_v1: Option<String>,
}

impl OomCgroup {
    fn create(limit: u64) -> OomCgroup {
        let name = format!("bpf-exporter-oom-{}", std::process::id());
        let unified = cgroup_mount(|fstype, _| fstype == "cgroup2").expect("no cgroup2 mount");
        let path = format!("{unified}/{name}");
        std::fs::create_dir(&path).unwrap();
        let mut cgroup = OomCgroup {
            path,
            memory_v1: None,
        };
        let controllers = std::fs::read_to_string(format!("{unified}/cgroup.controllers")).unwrap();
        let write = |dir: &str, file: &str, value: &str| {
            std::fs::write(format!("{dir}/{file}"), value).unwrap_or_else(|e| panic!("{dir}/{file}: {e}"))
        };
        if controllers.split_whitespace().any(|c| c == "memory") {
            write(&unified, "cgroup.subtree_control", "+memory");
            write(&cgroup.path, "memory.max", &limit.to_string());
            if std::path::Path::new(&format!("{}/memory.swap.max", cgroup.path)).exists() {
                write(&cgroup.path, "memory.swap.max", "0");
            }
        } else {
            let memory = cgroup_mount(|fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == "memory")
            })
            .expect("no memory controller on cgroup v2 nor v1");
            let dir = format!("{memory}/{name}");
            std::fs::create_dir(&dir).unwrap();
            cgroup.memory_v1 = Some(dir.clone());
            write(&dir, "memory.limit_in_bytes", &limit.to_string());
            // Memory plus swap, where swap is accounted: no way out to swap.
            if std::path::Path::new(&format!("{dir}/memory.memsw.limit_in_bytes")).exists() {
                write(&dir, "memory.memsw.limit_in_bytes", &limit.to_string());
            }
        }
        cgroup
    }

    /// Runs the shell `script` inside the cgroup; its exit status. Kills it
    /// if the OOM killer has not within a minute.
    fn run(&self, script: &str) -> std::process::ExitStatus {
        let procs: Vec<String> = std::iter::once(&self.path)
            .chain(&self.memory_v1)
            .map(|dir| format!("{dir}/cgroup.procs"))
            .collect();
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for f; do echo $$ > \"$f\" || exit 100; done; {script}"))
            .arg("sh")
            .args(&procs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("not OOM-killed within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OomCgroup {
    fn drop(&mut self) {
        // Empty by now: the one process in it has been reaped.
        let _ = std::fs::remove_dir(&self.path);
        if let Some(dir) = &self.memory_v1 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The mount point of the first cgroup filesystem that `wanted(fstype,
/// super options)` accepts, from /proc/self/mountinfo.
fn cgroup_mount(wanted: impl Fn(&str, &str) -> bool) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <dev> <root> <mount point> <options> [optional…] -
        // <fstype> <source> <super options>"
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        let (fstype, _source, options) = (fs.next()?, fs.next()?, fs.next()?);
        wanted(fstype, options).then(|| mount.split(' ').nth(4).map(str::to_string))?
    })
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
fn lose_and_recover(reader: &mut bpf_exporter::reader::Reader, listen: &str, addr: &str) {
    use std::net::TcpListener;
    let listener = TcpListener::bind(listen).unwrap();
    let mut client = tcp_connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let client_port = client.local_addr().unwrap().port().to_string();
    let server_port = listener.local_addr().unwrap().port().to_string();
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

    let message = b"lost, then retransmitted";
    {
        let mut loss = start_sources(&[xdp_drop_source()]);
        client.write_all(message).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter(&reader.read(), TCP_RETRANSMITS, &sent) == 0 {
            assert!(
                Instant::now() < deadline,
                "{addr}: no retransmission counted in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The first transmission and at least one retransmission were lost.
        assert!(counter(&loss.read(), "ebpf_xdp_dropped_total", &[]) >= 2);
    }
    // The loss is over (the drop program detached): a later retransmission
    // gets through.
    server.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut received = vec![0u8; message.len()];
    server.read_exact(&mut received).unwrap();
    assert_eq!(received, message);
    // The server sent no data, so it had nothing to retransmit.
    assert_eq!(counter(&reader.read(), TCP_RETRANSMITS, &reverse), 0, "{addr}");
}

/// tests/bpf/xdp_drop.bpf.c on this thread's `lo`: total loss while loaded.
fn xdp_drop_source() -> bpf_exporter::config::Source {
    bpf_exporter::config::Source {
        name: "xdp_drop".into(),
        origin: "test:xdp_drop.yaml".into(),
        text: "metrics:\n  counters:\n    - name: xdp_dropped_total\n      help: Packets dropped.\n\
               attach:\n  - program: drop_packets\n    xdp:\n      interface: lo\n      mode: generic\n"
            .into(),
    }
}
