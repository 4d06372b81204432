//! Test support shared by the services' integration tests (included with `#[path]`, so it
//! needs no crate of its own): starting the Node helpers of tests/e2e.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `node {script} <args of a fresh port>` in tests/e2e and waits for its `ready <issuer>`
/// line. A node that hangs before it is ready (seen once: a deadlock at start-up, which held the
/// test until it was killed 20 minutes later) is killed after 30 s and started again, at most
/// three times, so that one stuck process fails or retries instead of hanging the whole run.
pub fn spawn_ready(script: &str, args: impl Fn(u16) -> Vec<String>) -> (Child, String) {
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    let mut last = String::new();
    for _ in 0..3 {
        let mut child = Command::new("node")
            .arg(script)
            .args(args(free_port()))
            .current_dir(&e2e)
            // The script exits when its stdin closes, i.e. when this test process ends.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("`node` on PATH (tests/e2e/{script} needs it): {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send((line, out));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok((line, mut out)) if line.starts_with("ready ") => {
                // Keep draining its output: a closed pipe would make node crash on its next log
                // line.
                std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                let mut err = child.stderr.take().unwrap();
                std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
                return (child, line.trim_start_matches("ready ").trim().to_owned());
            }
            Ok((line, _)) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                let _ = child.wait();
                last = format!("{line}{err}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                last = "no `ready` line within 30 s".into();
            }
        }
    }
    panic!("{script} did not start (3 attempts): {last}");
}
