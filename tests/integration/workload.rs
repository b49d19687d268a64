//! Workloads that make the shipped programs fire, shared by the tests that
//! count one program's events and by the end-to-end test that drives them
//! all against a real Prometheus: block I/O on a loop device, an OOM kill in
//! a memory-limited cgroup, TCP retransmissions through total loss on a
//! private loopback, TCP connects refused, UDP round trips, datagrams to a
//! closed port and receive timeouts.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bpf_exporter::config::Source;
use bpf_exporter::exporter::Exporter;
use bpf_exporter::metrics::{Snapshot, Value};

pub use crate::oom::OomCgroup;

use crate::common::{counter, free_port, start_sources, tcp_connect};

pub const BIO_LATENCY: &str = "ebpf_bio_latency_seconds";

/// `prefix-<pid>-<n>`: a name no other test of this process (they run in
/// parallel) nor another test process uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A block of memory aligned for O_DIRECT.
#[repr(C, align(4096))]
struct Block([u8; 4096]);

/// A loop device over a sparse, already unlinked file; detached on drop, and
/// by the kernel (autoclear) if the process dies first.
pub struct LoopDevice {
    /// `loop<N>`, as in /proc/partitions.
    pub name: String,
    pub path: String,
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
    pub fn attach(size: u64) -> LoopDevice {
        // Unlinked at once: the device keeps the file alive, nothing is
        // left behind.
        let backing = tempfile::tempfile().unwrap();
        backing.set_len(size).unwrap();

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
    pub fn settle(&self, reader: &mut Exporter) {
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
                    Value::Histogram(h) => h.count,
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

    /// The device opened for O_DIRECT reads and writes, which bypass the
    /// page cache: each one is a request of its own.
    pub fn open_direct(&self) -> File {
        File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)
            .unwrap()
    }
}

/// `writes` block writes, an fsync, then `reads` block reads on `disk`
/// (opened with [`LoopDevice::open_direct`]): one request each, none merged
/// or served from a cache (block-aligned, one block at a time, distinct
/// offsets), plus the fsync's one flush request if the disk has a
/// write-back cache.
pub fn direct_io(disk: &File, writes: u64, reads: u64) {
    let mut block = Box::new(Block([0x5a; 4096]));
    for i in 0..writes {
        disk.write_all_at(&block.0, (1 << 20) + i * 8192).unwrap();
    }
    disk.sync_all().unwrap();
    for i in 0..reads {
        disk.read_exact_at(&mut block.0, i * 8192).unwrap();
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: LOOP_CLR_FD takes no argument. With autoclear set, closing
        // fd would detach it too; this does it now.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), LOOP_CLR_FD) };
    }
}

/// A TCP connection over `listen` (`127.0.0.1:0`, `[::1]:0`): the client's
/// end and the server's.
pub fn connected(listen: &str) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(listen).unwrap();
    let client = tcp_connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// A TCP connect to a port of 127.0.0.1 nothing listens on: refused.
pub fn refused_connect() {
    let err = tcp_connect(("127.0.0.1", free_port())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

/// Writes `message` from `client` to `server` through total loss on this
/// thread's `lo` (which must be a [`crate::common::private_loopback`]):
/// the first transmission and at least one retransmission are dropped,
/// then the loss ends and `server` receives the message from a later
/// retransmission. Only the client sends, so the second drop is its
/// retransmission, which the kernel traced before handing it to `lo`.
pub fn retransmit_through_loss(client: &mut TcpStream, server: &mut TcpStream, message: &[u8]) {
    {
        let mut loss = start_sources(&[xdp_drop_source()]);
        client.write_all(message).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter(&loss.read(), "ebpf_xdp_dropped_total", &[]) < 2 {
            assert!(Instant::now() < deadline, "no retransmission lost in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    server.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut received = vec![0u8; message.len()];
    server.read_exact(&mut received).unwrap();
    assert_eq!(received, message);
}

/// tests/bpf/xdp_drop.bpf.c on this thread's `lo`: total loss while loaded.
fn xdp_drop_source() -> Source {
    Source {
        name: "xdp_drop".into(),
        origin: "test:xdp_drop.yaml".into(),
        text: "metrics:\n  counters:\n    - name: xdp_dropped_total\n      help: Packets dropped.\n\
               attach:\n  - program: drop_packets\n    xdp:\n      interface: lo\n      mode: generic\n"
            .into(),
        ..Default::default()
    }
}

/// Sends `n` small datagrams over 127.0.0.1, each received before the next
/// leaves: each goes through `lo` (and through XDP there, if attached) and
/// is delivered by a net_rx softirq run.
pub fn udp_round_trips(n: u64) {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..n {
        sender.send_to(b"ping", receiver.local_addr().unwrap()).unwrap();
        assert_eq!(receiver.recv(&mut buf).unwrap(), 4);
    }
}

/// `n` receives that each time out after 1 ms. A receive timeout sleeps on
/// a timer_list timer (schedule_timeout(), kernel/time/sleep_timeout.c),
/// started once per receive, which expires in a timer softirq run; each is
/// started after the last expired, so each gets a run of its own.
pub fn receive_timeouts(n: u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..n {
        let err = socket.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
    }
}

/// Sends `n` datagrams over 127.0.0.1 to a port nothing listens on: the
/// kernel drops each (NO_SOCKET, __udp4_lib_rcv(), net/ipv4/udp.c) and
/// answers with an ICMP port unreachable, which an unconnected sender
/// never sees.
pub fn datagrams_to_a_closed_port(n: u64) {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..n {
        sender.send_to(b"nobody", closed).unwrap();
    }
}
