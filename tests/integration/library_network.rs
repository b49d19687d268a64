//! The machine-wide network programs (packet_drops, tcp_connect_latency)
//! on the real kernel. Drops are held to exact counts, for a reason
//! nothing else on a test machine produces. TCP connects and refused ones
//! are everyday events: this binary's other tests wait while connects are
//! counted ([`hold_off_tcp_connects`]), other processes cannot be made to,
//! so connects are counted in short tries: every try must count at least
//! what it did, and one of a few, a quiet one, exactly that.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use bpf_exporter::decoders::{self, DecoderOptions};
use bpf_exporter::exporter::Exporter;
use socket2::{Domain, SockFilter, Socket, Type};

use crate::common::*;

const PACKET_DROPS: &str = "ebpf_packet_drops_total";

/// A UDP socket on `addr` whose classic BPF socket filter keeps 0 bytes
/// of every datagram, which drops it (sk_filter_trim_cap(),
/// net/core/filter.c).
fn filtered_receiver(addr: SocketAddr) -> UdpSocket {
    /// BPF_RET | BPF_K, include/uapi/linux/filter.h: return the constant.
    const RET_K: u16 = 0x06;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None).unwrap();
    socket.attach_filter(&[SockFilter::new(RET_K, 0, 0, 0)]).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.into()
}

#[test]
fn packet_drops_counts_each_datagram_a_socket_filter_refuses_under_socket_filter_exactly() {
    if !bpf_available() {
        return;
    }
    const DATAGRAMS: u64 = 500;
    std::thread::spawn(|| {
        private_loopback();
        let mut reader = start(&["packet_drops"]);
        let labels = [("reason", "SOCKET_FILTER")];
        let receiver = filtered_receiver("127.0.0.1:0".parse().unwrap());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = counter(&reader.read(), PACKET_DROPS, &labels);
        for _ in 0..DATAGRAMS {
            sender
                .send_to(b"filtered", receiver.local_addr().unwrap())
                .unwrap();
        }
        // lo delivers in a softirq, usually before send_to() returns but
        // later if the softirq was deferred to ksoftirqd: wait for all of
        // them, then a little longer for any counted twice.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter(&reader.read(), PACKET_DROPS, &labels) - before < DATAGRAMS {
            assert!(Instant::now() < deadline, "not every datagram counted in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(counter(&reader.read(), PACKET_DROPS, &labels) - before, DATAGRAMS);
        // The filter did drop them all.
        receiver.set_nonblocking(true).unwrap();
        let err = receiver.recv(&mut [0u8; 64]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    })
    .join()
    .unwrap();
}

/// `{ <number>, "<name>" }` pairs of the kfree_skb tracepoint's print
/// format: the names the kernel itself prints for each reason.
fn tracepoint_reason_names() -> Vec<(u64, String)> {
    bpf_exporter::programs::fs::ensure_tracefs().unwrap();
    let path = "/sys/kernel/tracing/events/skb/kfree_skb/format";
    let format = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (_, symbols) = format
        .split_once("__print_symbolic(REC->reason,")
        .unwrap_or_else(|| panic!("{path}: no symbolic reason in {format}"));
    let symbols = symbols.split(')').next().unwrap();
    symbols
        .split('{')
        .skip(1)
        .map(|pair| {
            let (number, name) = pair.split_once(',').unwrap();
            let name = name.split('"').nth(1).unwrap();
            (number.trim().parse().unwrap(), name.to_string())
        })
        .collect()
}

#[test]
fn skb_drop_reason_names_every_reason_as_the_kfree_skb_tracepoint_prints_it() {
    if !bpf_available() {
        return;
    }
    let printed = tracepoint_reason_names();
    // Linux 5.17 printed 30-odd, 6.18 prints 128.
    assert!(printed.len() > 20, "{printed:?}");
    assert!(
        printed.iter().any(|(_, name)| name == "SOCKET_FILTER"),
        "{printed:?}"
    );
    let decoder = decoders::build("skb_drop_reason", &DecoderOptions::default()).unwrap();
    for (number, name) in printed {
        let decoded = decoder.decode(number.to_string().as_bytes()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), name, "reason {number}");
    }
}

const CONNECT_LATENCY: &str = "ebpf_tcp_connect_latency_seconds";
const CONNECT_FAILURES: &str = "ebpf_tcp_connect_failures_total";

#[test]
fn tcp_connect_latency_times_each_connect_and_counts_each_refused_one_for_ipv4_and_ipv6() {
    if !bpf_available() {
        return;
    }
    std::thread::spawn(|| {
        private_loopback();
        let mut reader = start(&["tcp_connect_latency"]);
        // No labels: the counter is there before anything failed.
        let failures = series(&reader.read(), CONNECT_FAILURES);
        assert_eq!(
            failures.keys().collect::<Vec<_>>(),
            [&Vec::<String>::new()],
            "{failures:?}"
        );
        count_connects(&mut reader, "ipv4", "127.0.0.1:0".parse().unwrap());
        count_connects(&mut reader, "ipv6", "[::1]:0".parse().unwrap());
    })
    .join()
    .unwrap();
}

/// Connects to a listener on `addr`, to the socket's own address
/// (a simultaneous open: SYN_SENT, SYN_RECV, ESTABLISHED) and to a port
/// bound without a listener (refused), in tries until one counts exactly
/// those; every try must count at least as many.
fn count_connects(reader: &mut Exporter, family: &str, addr: SocketAddr) {
    const CONNECTS: u64 = 100;
    const SELF_CONNECTS: u64 = 20;
    const REFUSED: u64 = 50;
    const TRIES: usize = 10;
    let labels = [("family", family)];
    let listener = TcpListener::bind(addr).unwrap();
    // Bound without a listener: connects are refused, and nothing else can
    // listen there meanwhile.
    let unlistened = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    unlistened.bind(&addr.into()).unwrap();
    let refusing = unlistened.local_addr().unwrap().as_socket().unwrap();
    let mut counted = Vec::new();
    for _ in 0..TRIES {
        // The connects below are the only ones of this binary meanwhile,
        // and so they do not go through tcp_connect(), which would wait.
        let _others_wait = hold_off_tcp_connects();
        let before = reader.read();
        for _ in 0..CONNECTS {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            drop((client, server));
        }
        for _ in 0..SELF_CONNECTS {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
            socket.bind(&addr.into()).unwrap();
            let own = socket.local_addr().unwrap();
            socket.connect(&own).unwrap();
        }
        for _ in 0..REFUSED {
            let err = TcpStream::connect(refusing).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{family}: {err}");
        }
        let after = reader.read();

        let now = histogram(&after, CONNECT_LATENCY, &labels);
        assert_consistent_exp2(&now, 1e-9, 11..=37);
        let timed = delta(&now, find_histogram(&before, CONNECT_LATENCY, &labels).as_ref());
        let failed = counter(&after, CONNECT_FAILURES, &[]) - counter(&before, CONNECT_FAILURES, &[]);
        counted.push((timed.count, failed));
        assert!(
            timed.count >= CONNECTS + SELF_CONNECTS && failed >= REFUSED,
            "{family}: (timed, failed) {counted:?} for {} connects and {REFUSED} refused",
            CONNECTS + SELF_CONNECTS
        );
        if (timed.count, failed) == (CONNECTS + SELF_CONNECTS, REFUSED) {
            // Only the test's own connects, all on loopback: nanoseconds
            // read as seconds, they take over a microsecond and, on
            // average, well under 10 ms.
            let mean = timed.sum / timed.count as f64;
            assert!(
                (1e-6..1e-2).contains(&mean),
                "{family}: mean {mean} s in {timed:?}"
            );
            return;
        }
    }
    panic!(
        "{family}: (timed, failed) {counted:?}, never exactly {} connects and {REFUSED} refused",
        CONNECTS + SELF_CONNECTS
    );
}
