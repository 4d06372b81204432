//! `<service> healthcheck`: the probe a container runtime runs inside the container (Docker
//! `HEALTHCHECK`, compose `healthcheck`), with no shell, curl or wget in the image. It asks the
//! service's own `/readyz` over plain HTTP/1.1 on a std TCP socket and says in one line why it
//! failed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Connect, write and read timeout of one probe: well under Docker's default 30 s
/// `--timeout`, so a hung service is reported as such rather than killed by the runtime.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Where to probe a listener bound to `listen`: a wildcard address (`0.0.0.0`, `[::]`) is
/// reached through loopback of the same family, any other address as configured.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /readyz` on the listener bound to `listen`: `Ok(())` on 200, else a one-line reason.
pub fn check(listen: SocketAddr, timeout: Duration) -> Result<(), String> {
    let target = probe_addr(listen);
    let url = format!("http://{target}/readyz");
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("GET {url}: cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("GET {url}: {e}"))?;
    let request = format!(
        "GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nUser-Agent: mcpauth-healthcheck\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET {url}: cannot send the request: {e}"))?;
    // The status line is all that is needed; read until its end (or a small cap).
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 128];
    while !head.contains(&b'\n') && head.len() < 1024 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET {url}: no answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("").trim();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200) => Ok(()),
        Some(code) => Err(format!("GET {url} answered {code}, not 200")),
        None if line.is_empty() => Err(format!("GET {url}: connection closed without an answer")),
        None => Err(format!("GET {url}: not an HTTP answer: {:.60}", line)),
    }
}

/// The whole `healthcheck` subcommand: prints `ok` or `<service>: unhealthy: <reason>`.
pub fn run(service: &str, listen: Result<SocketAddr, String>) -> ExitCode {
    match listen.and_then(|addr| check(addr, TIMEOUT)) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{service}: unhealthy: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server answering `reply` to the first request; returns its address.
    fn serve_once(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = s.read(&mut req).unwrap();
            s.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_addr("[::]:8081".parse().unwrap()),
            "[::1]:8081".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_addr("10.1.2.3:9".parse().unwrap()),
            "10.1.2.3:9".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn ready_is_200_on_readyz() {
        let (addr, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready");
        let wildcard = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
        assert_eq!(check(wildcard, TIMEOUT), Ok(()));
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn not_ready_names_the_status() {
        let (addr, server) =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let e = check(addr, TIMEOUT).unwrap_err();
        server.join().unwrap();
        assert_eq!(e, format!("GET http://{addr}/readyz answered 503, not 200"));
    }

    #[test]
    fn nothing_listening_is_one_line() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check(SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = check(addr, Duration::from_millis(200)).unwrap_err();
        drop(listener);
        assert!(
            e.starts_with(&format!("GET http://{addr}/readyz: no answer")),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_not_an_answer() {
        let (addr, server) = serve_once("SSH-2.0-OpenSSH\r\n");
        let e = check(addr, TIMEOUT).unwrap_err();
        server.join().unwrap();
        assert!(e.contains("not an HTTP answer"), "{e}");
    }
}
