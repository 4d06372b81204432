//! Test support (included with `#[path]`, so it needs no crate of its own): a private Postgres
//! and a private plain redis-server, each on its own loopback port and data directory, that a
//! test may kill and start again on the same port (fault tests). The machine's shared Postgres
//! and Redis are never touched. Both are stopped (and their files removed) on drop.
//!
//! Needs Debian's Postgres 15 binaries (`/usr/lib/postgresql/15/bin`, or the directory in
//! `MCPAUTH_PG_BIN`) and `redis-server` on PATH. Postgres refuses to run as root: when the test
//! runs as root, the cluster is created and run as the `postgres` system user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_dir(kind: &str, name: &str) -> PathBuf {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("mcpauth-{kind}-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until something accepts TCP connections on `port`, or panics with `log()`.
fn wait_listening(what: &str, child: &mut Child, port: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}): {}", log());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 30 s: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (e.g. `QUIT`, `KILL`) to `child` and reaps it.
fn signal_and_wait(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The (uid, gid) of the `postgres` system user when this process runs as root (Postgres
/// refuses root), else `None` (run as ourselves).
fn postgres_user_if_root() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("`id postgres`: running as root needs the postgres system user");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root needs the postgres system user")
    };
    Some((id("-u"), id("-g")))
}

/// A private Postgres cluster (trust authentication, user `postgres`) on a free loopback port.
pub struct PrivatePostgres {
    child: Option<Child>,
    dir: PathBuf,
    user: Option<(u32, u32)>,
    /// The port on 127.0.0.1 (the same after every restart).
    pub port: u16,
}

impl PrivatePostgres {
    /// `initdb` into a fresh directory and start the server; panics with the log on failure.
    pub fn start(name: &str) -> Self {
        let dir = scratch_dir("pg", name);
        let user = postgres_user_if_root();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null());
        as_user(&mut initdb, user);
        let out = initdb
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin("initdb").display()));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PrivatePostgres {
            child: None,
            dir,
            user,
            port: free_port(),
        };
        pg.start_again();
        pg
    }

    /// Starts the server (again) on the same port and data directory; returns once it accepts
    /// connections (crash recovery, after [`Self::crash`], is done by then or under way: early
    /// connections may be told "the database system is starting up").
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Postgres is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(self.dir.join("postgres.log"), Some(uid), Some(gid)).unwrap();
        }
        let mut cmd = Command::new(bin("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_user(&mut cmd, self.user);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin("postgres").display()));
        let dir = self.dir.clone();
        wait_listening("postgres", &mut child, self.port, || {
            std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
        });
        self.child = Some(child);
    }

    /// Stops the server the way a crash or an `immediate` shutdown does (SIGQUIT: every backend
    /// ends at once, no checkpoint; the next start runs crash recovery).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_and_wait(&mut c, "QUIT");
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (the harnesses create databases there).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Fast shutdown (SIGINT): sessions end, the postmaster exits.
            signal_and_wait(&mut c, "INT");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin(name: &str) -> PathBuf {
    let dir =
        std::env::var("MCPAUTH_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(name)
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

/// A private plain redis-server (no persistence: a restart loses everything, as a cache-only
/// Redis does) on a free loopback port.
pub struct PrivateRedis {
    child: Option<Child>,
    dir: PathBuf,
    /// The port on 127.0.0.1 (the same after every restart).
    pub port: u16,
}

impl PrivateRedis {
    pub fn start(name: &str) -> Self {
        let mut r = PrivateRedis {
            child: None,
            dir: scratch_dir("redis", name),
            port: free_port(),
        };
        r.start_again();
        r
    }

    /// Starts redis-server (again) on the same port; returns once it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (Debian: apt-get install redis-server): {e}")
            });
        let dir = self.dir.clone();
        wait_listening("redis-server", &mut child, self.port, || {
            std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
        });
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL): connections drop, and without persistence every key is gone.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_and_wait(&mut c, "KILL");
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_and_wait(&mut c, "KILL");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
