//! The listening socket, and the descriptors it needs. Addresses follow
//! Prometheus conventions (`:9435` means all interfaces) so flags can be
//! copied from other exporters, and every bind failure names the address,
//! the flag and a likely fix, since a taken or privileged port is the most
//! common way startup fails. Under systemd socket activation the socket is
//! systemd's instead.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{anyhow, bail, Context as _};
use tokio::net::TcpListener;

use super::ServerOptions;

/// Opens the listening socket.
///
/// Separate from [`serve`](super::serve) so that a taken port fails startup
/// before BPF programs are loaded, and so tests can bind port 0 and learn
/// the port.
pub async fn bind(opts: &ServerOptions) -> anyhow::Result<TcpListener> {
    if !opts.telemetry_path.starts_with('/') {
        bail!(
            "telemetry path {:?} must start with '/'; fix --web.telemetry-path",
            opts.telemetry_path
        );
    }
    if opts.systemd_socket {
        return systemd_socket();
    }
    match parse_listen(&opts.listen)? {
        Listen::AllInterfaces(port) => {
            // Like Go's net.Listen(":port"): one dual-stack socket when the
            // host has IPv6, plain IPv4 otherwise.
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match listen_on(v6, true) {
                Ok(listener) => Ok(listener),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    Err(bind_error(&opts.listen, v6, err))
                }
                Err(err) => {
                    tracing::debug!(%err, "no dual-stack socket; listening on IPv4 only");
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    listen_on(v4, false).map_err(|err| bind_error(&opts.listen, v4, err))
                }
            }
        }
        Listen::Host(host, port) => {
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .with_context(|| {
                        format!(
                            "cannot resolve {host:?} from --web.listen-address {:?}; \
                             use an IP address or a resolvable host name",
                            opts.listen
                        )
                    })?
                    .collect(),
            };
            let mut last_err = None;
            for addr in addrs {
                match listen_on(addr, false) {
                    Ok(listener) => return Ok(listener),
                    Err(err) => last_err = Some(bind_error(&opts.listen, addr, err)),
                }
            }
            Err(last_err.unwrap_or_else(|| {
                anyhow!(
                    "{host:?} from --web.listen-address {:?} resolved to no address",
                    opts.listen
                )
            }))
        }
    }
}

/// The first socket systemd passed (`LISTEN_FDS`, for this process).
fn systemd_socket() -> anyhow::Result<TcpListener> {
    use std::os::fd::FromRawFd as _;
    let hint = "start the exporter through its .socket unit (see packaging/systemd/), \
                or drop --web.systemd-socket and use --web.listen-address";
    let fd = sd_notify::listen_fds()
        .context("--web.systemd-socket: reading LISTEN_FDS")?
        .next()
        .ok_or_else(|| anyhow!("--web.systemd-socket: systemd passed no socket; {hint}"))?;
    // SAFETY: systemd hands the descriptor to this process to own; nothing
    // else in the process uses it.
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    let listening = socket.r#type().ok() == Some(socket2::Type::STREAM)
        && socket.local_addr().ok().and_then(|a| a.as_socket()).is_some();
    if !listening {
        bail!(
            "--web.systemd-socket: the socket systemd passed (fd {fd}) is not a TCP stream socket; \
               use ListenStream= with an address in the .socket unit"
        );
    }
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// Raises the soft limit on open files to the hard one, as Go programs do
/// at start: the soft default (1024 under systemd) is what select(2)
/// needed, and an exporter with it runs out of descriptors at ~1000 idle
/// connections. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// The TCP port the exporter will bind, if it binds one (not under
/// `--web.systemd-socket`) and the address is valid.
pub fn port(opts: &ServerOptions) -> Option<u16> {
    if opts.systemd_socket {
        return None;
    }
    match parse_listen(&opts.listen).ok()? {
        Listen::AllInterfaces(port) | Listen::Host(_, port) => Some(port),
    }
}

#[derive(Debug, PartialEq)]
enum Listen {
    AllInterfaces(u16),
    /// Host name or IP address (IPv6 without brackets), and port.
    Host(String, u16),
}

fn parse_listen(listen: &str) -> anyhow::Result<Listen> {
    let usage = "use :PORT, HOST:PORT or [IPV6]:PORT with --web.listen-address";
    if listen.starts_with("fd://") {
        bail!(
            "listen address {listen:?}: of systemd's sockets only fd://0, the first, can be served \
             (the same as --web.systemd-socket)"
        );
    }
    let Some((host, port)) = listen.trim().rsplit_once(':') else {
        bail!("listen address {listen:?} has no port; {usage}");
    };
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("listen address {listen:?} has an invalid port {port:?}; {usage}"))?;
    if host.is_empty() {
        return Ok(Listen::AllInterfaces(port));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| anyhow!("listen address {listen:?}: {inner:?} is not an IPv6 address; {usage}"))?;
        return Ok(Listen::Host(ip.to_string(), port));
    }
    if host.contains([':', '[', ']']) {
        bail!("listen address {listen:?}: IPv6 addresses need brackets, e.g. [::1]:{port}; {usage}");
    }
    Ok(Listen::Host(host.to_string(), port))
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the exporter must not fail on connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn bind_error(listen: &str, addr: SocketAddr, err: io::Error) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            "another process (perhaps another bpf-exporter) already listens there; \
             stop it or choose a free port with --web.listen-address"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE; \
             choose a higher port with --web.listen-address"
        }
        io::ErrorKind::AddrNotAvailable => {
            "no local interface has that address; use one that exists, \
             or :PORT for all interfaces, with --web.listen-address"
        }
        _ => "check --web.listen-address",
    };
    anyhow!("cannot listen on {addr} (--web.listen-address {listen:?}): {err}; {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[tokio::test(flavor = "current_thread")]
    async fn bind_errors_name_address_and_flag() {
        let first = bind(&ServerOptions {
            listen: "127.0.0.1:0".into(),
            ..ServerOptions::default()
        })
        .await
        .expect("bind");
        let taken = first.local_addr().expect("addr").to_string();
        let err = bind(&ServerOptions {
            listen: taken.clone(),
            ..ServerOptions::default()
        })
        .await
        .expect_err("port is taken")
        .to_string();
        assert!(err.contains(&taken), "{err}");
        assert!(err.contains("--web.listen-address"), "{err}");
        assert!(err.contains("already listens"), "{err}");

        let err = bind(&ServerOptions {
            listen: "127.0.0.1:0".into(),
            telemetry_path: "metrics".into(),
            ..ServerOptions::default()
        })
        .await
        .expect_err("relative telemetry path")
        .to_string();
        assert!(err.contains("--web.telemetry-path"), "{err}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ipv6_loopback_when_available() {
        match bind(&ServerOptions {
            listen: "[::1]:0".into(),
            ..ServerOptions::default()
        })
        .await
        {
            Ok(listener) => assert!(listener.local_addr().expect("addr").is_ipv6()),
            Err(err) => eprintln!("note: no IPv6 loopback here: {err}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_systemd_socket_that_was_not_passed_is_a_clear_error() {
        let err = bind(&ServerOptions {
            systemd_socket: true,
            ..ServerOptions::default()
        })
        .await
        .expect_err("no LISTEN_FDS in tests")
        .to_string();
        assert!(err.contains("systemd passed no socket"), "{err}");
        assert!(err.contains("--web.listen-address"), "{err}");
    }

    #[test]
    fn listen_address_parsing() {
        assert_eq!(parse_listen(":9435").unwrap(), Listen::AllInterfaces(9435));
        assert_eq!(
            parse_listen("127.0.0.1:80").unwrap(),
            Listen::Host("127.0.0.1".into(), 80)
        );
        assert_eq!(
            parse_listen("[::1]:9435").unwrap(),
            Listen::Host("::1".into(), 9435)
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            Listen::Host("localhost".into(), 1)
        );
        for bad in [
            "",
            "9435",
            ":",
            ":99999",
            "host:port",
            "::1:9435",
            "[::1:9435",
            "[nope]:1",
        ] {
            let err = parse_listen(bad).expect_err(bad).to_string();
            assert!(err.contains("--web.listen-address"), "{bad}: {err}");
        }
    }

    #[test]
    fn all_interfaces_bind_is_dual_stack_or_ipv4() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = bind(&ServerOptions {
                listen: ":0".into(),
                ..ServerOptions::default()
            })
            .await
            .expect("bind all interfaces");
            let port = listener.local_addr().expect("addr").port();
            // Reachable over IPv4 either way, and over IPv6 when dual-stack.
            let conn = TcpStream::connect(("127.0.0.1", port)).await;
            assert!(conn.is_ok(), "{conn:?}");
            if listener.local_addr().expect("addr").is_ipv6() {
                let conn = TcpStream::connect(("::1", port)).await;
                assert!(conn.is_ok(), "{conn:?}");
            }
        });
    }
}
