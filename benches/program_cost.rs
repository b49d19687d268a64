//! Per-event cost of every embedded program, from the kernel's BPF run-time
//! statistics: loads every embedded config (opt-in ones too), drives a
//! mixed workload (syscalls, failing syscalls, execs, page faults, file
//! writes with fsync, sleeps, UDP on loopback, a datagram a socket filter
//! drops, TCP connects accepted and refused, a SYN retransmitted to a full
//! listen queue, one OOM kill in a memory-limited cgroup) for a few seconds
//! and prints
//! run time per program run. Whatever else the machine does in that time
//! counts too, so the figure is an average over a real mix. Needs root:
//! `sudo cargo bench --bench program_cost`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bpf_exporter::exporter::{self, Exporter};
use bpf_exporter::metrics::{Snapshot, Value};
use bpf_exporter::reader::cache::LabelCache;
use bpf_exporter::reader::{Reader, DEFAULT_CACHE_SIZE, DEFAULT_REFRESH};
use bpf_exporter::reload::LoadSettings;
use bpf_exporter::{config, programs};

#[path = "../tests/integration/oom.rs"]
mod oom;

const WORKLOAD: Duration = Duration::from_secs(5);

fn main() {
    let _stats = programs::stats::enable().expect("enabling BPF statistics (run as root)");
    // The opt-in configs too: their cost is what decides they are opt-in.
    let every: Vec<String> = config::EMBEDDED_CONFIGS
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let listing = config::sources(None, Some(&every)).expect("embedded configs");
    let reader = Reader::new(LabelCache::new(DEFAULT_CACHE_SIZE, DEFAULT_REFRESH), true);
    let (mut reader, _) = Exporter::start(&listing, LoadSettings::default(), reader);
    print!("{}", exporter::report(&reader.statuses()));
    let before = totals(&reader.read());
    workload();
    let snapshot = reader.read();
    let after = totals(&snapshot);
    println!("{:<34} {:>12} {:>12}", "config/program", "runs", "ns per run");
    for (program, (runs, ns)) in &after {
        let (runs0, ns0) = before.get(program).copied().unwrap_or_default();
        let runs = runs - runs0;
        let per_run = if runs == 0 { 0.0 } else { (ns - ns0) / runs as f64 };
        println!("{program:<34} {runs:>12} {per_run:>12.0}");
    }
    let series: usize = snapshot
        .families
        .iter()
        .filter(|f| f.name.starts_with("ebpf_"))
        .map(|f| f.samples.len())
        .sum();
    println!("ebpf_* label sets after the workload (a histogram counts once): {series}");
}

/// `config/program` → (runs, run time in ns).
fn totals(snapshot: &Snapshot) -> BTreeMap<String, (u64, f64)> {
    let mut out: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for family in &snapshot.families {
        for sample in &family.samples {
            let key = sample.label_values.join("/");
            match (family.name.as_str(), &sample.value) {
                ("bpf_exporter_program_runs_total", Value::Counter(v)) => out.entry(key).or_default().0 = *v,
                ("bpf_exporter_program_run_time_seconds_total", Value::FloatCounter(v)) => {
                    out.entry(key).or_default().1 = v * 1e9
                }
                _ => {}
            }
        }
    }
    out
}

fn workload() {
    let mut file = tempfile::tempfile().expect("temp file");
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    // This socket's filter keeps 0 bytes of each datagram, which drops it
    // (BPF_RET | BPF_K 0, include/uapi/linux/filter.h): for packet_drops.
    let filtered = loopback_socket(socket2::Type::DGRAM);
    filtered
        .attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])
        .expect("socket filter");
    // For tcp_connect_latency: connects to a listener, timed, and to a port
    // bound without one, refused (nothing else can listen there meanwhile).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let unlistened = loopback_socket(socket2::Type::STREAM);
    let address = |socket: &socket2::Socket| socket.local_addr().unwrap().as_socket().unwrap();
    let _unanswered = syn_retransmissions();
    // For oomkills: one victim.
    oom::OomCgroup::create(&format!("bpf-exporter-bench-{}", std::process::id()), 32 << 20).oom_kill_a_task();
    let started = Instant::now();
    while started.elapsed() < WORKLOAD {
        for _ in 0..1000 {
            // SAFETY: a query with no memory arguments.
            unsafe { libc::getppid() };
        }
        for _ in 0..100 {
            // Fails with EINVAL: the error path of syscall_errors.
            // SAFETY: a query with no memory arguments.
            unsafe { libc::sched_get_priority_max(-1) };
        }
        // Fresh zeroed memory is mapped on first touch: a page fault per
        // page written.
        let mut fresh = vec![0u8; 1 << 20];
        fresh.iter_mut().step_by(4096).for_each(|b| *b = 1);
        std::hint::black_box(&fresh);
        let _ = std::process::Command::new("/bin/true").status();
        file.write_all(&[7u8; 4096]).expect("write");
        file.sync_all().expect("fsync");
        sender
            .send_to(b"x", receiver.local_addr().unwrap())
            .expect("send");
        sender.send_to(b"x", address(&filtered)).expect("send");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        drop((client, listener.accept().expect("accept")));
        std::net::TcpStream::connect(address(&unlistened)).expect_err("connect to a port without a listener");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A socket of `kind` bound to a free port on 127.0.0.1.
fn loopback_socket(kind: socket2::Type) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, kind, None).expect("socket");
    let address: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&address.into()).expect("bind");
    socket
}

/// For tcp_retransmits: a connect whose SYN goes unanswered, retransmitted
/// after 1 s and 3 s, while the returned sockets live. The listener has a
/// listen queue of 0 and never accepts: the first connect fills it, so the
/// second's SYNs are dropped (tcp_conn_request(), net/ipv4/tcp_input.c).
fn syn_retransmissions() -> [socket2::Socket; 3] {
    let listener = loopback_socket(socket2::Type::STREAM);
    listener.listen(0).expect("listen");
    let to = listener.local_addr().expect("address");
    let queued = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    queued.connect(&to).expect("connect");
    let unanswered =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    unanswered.set_nonblocking(true).expect("nonblocking");
    // EINPROGRESS: the SYN is out and the connect carries on without us.
    let _ = unanswered.connect(&to);
    [listener, queued, unanswered]
}
