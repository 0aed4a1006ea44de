//! A real `redis-server` for tests: started on a free `127.0.0.1` port with no
//! persistence, waited on until it answers `PING`, killed on drop.
//!
//! The binary is `$MODELWAY_REDIS_SERVER`, else `redis-server` on `PATH`. When it is
//! missing, [`RedisServer::start`] returns `None` (the test prints a skip line and
//! returns), unless `$CI` or `$MODELWAY_REQUIRE_REDIS` is set: then it panics, so CI
//! cannot pass by skipping.
//!
//! ```no_run
//! let Some(redis) = modelway_testkit::RedisServer::start() else {
//!     return; // "skipped: redis-server not installed" was printed
//! };
//! assert!(redis.url().starts_with("redis://127.0.0.1:"));
//! ```
//!
//! Only `std`: every wait here is bounded and blocking (a few milliseconds at a time),
//! so it may be called from a test's async body.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use crate::service::{free_port, missing, on_path};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// Ports tried before giving up (another process may take a port between our probe
/// and the server's bind).
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` child process on `127.0.0.1`.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password on a free port. `None` when the binary is
    /// missing and neither `$CI` nor `$MODELWAY_REQUIRE_REDIS` is set (a line saying
    /// the test is skipped is printed); panics if it cannot be started.
    pub fn start() -> Option<Self> {
        Self::start_inner(None)
    }

    /// Like [`Self::start`], with `requirepass password`.
    pub fn start_with_password(password: &str) -> Option<Self> {
        Self::start_inner(Some(password.to_owned()))
    }

    /// Starts a server without a password on `port` (e.g. one a store was pointed at
    /// before any server listened there). `None` as for [`Self::start`]; panics if it
    /// cannot be started there.
    pub fn start_on(port: u16) -> Option<Self> {
        let binary = find_binary()?;
        let mut server = Self {
            binary,
            port,
            password: None,
            child: None,
        };
        if let Err(e) = server.spawn() {
            panic!("could not start redis-server on 127.0.0.1:{port}: {e}");
        }
        Some(server)
    }

    fn start_inner(password: Option<String>) -> Option<Self> {
        let binary = find_binary()?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    last_error = format!("no free port on 127.0.0.1: {e}");
                    continue;
                }
            };
            let mut server = Self {
                binary: binary.clone(),
                port,
                password: password.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!(
            "could not start {} after {PORT_ATTEMPTS} ports: {last_error}",
            binary.display()
        );
    }

    /// `redis://127.0.0.1:PORT/0` (with the password, if the server has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is running (it may still be starting).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server and waits for it to exit. Its data is gone (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The port is closed once the process is gone; make sure before returning so a
        // test's next check sees a refused connection, not a dying server.
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline && connect(self.port, Duration::from_millis(50)).is_ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes the process (`SIGSTOP`): its connections stay open but nothing is
    /// answered, like a hung server or a partition. `false` where that is not possible
    /// (not Unix, no `kill` command, not running).
    pub fn pause(&self) -> bool {
        self.signal("-STOP")
    }

    /// Undoes [`Self::pause`] (`SIGCONT`).
    pub fn resume(&self) -> bool {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        if !cfg!(unix) {
            return false;
        }
        Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server (if running) and starts a fresh, empty one on the same port.
    /// Panics if it does not come up (the port may have been taken meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        let mut last_error = String::new();
        // The port may linger briefly after the old process; retry, bounded.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "could not restart redis-server on 127.0.0.1:{}: {last_error}",
            self.port
        );
    }

    /// Starts the process on `self.port` and waits until it answers `PING`.
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.arg("--requirepass").arg(p);
        }
        // Run in the temp dir: `--save ""` writes nothing, but a server never runs in
        // the crate's directory.
        cmd.current_dir(std::env::temp_dir());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not run {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Most likely the port was taken between our probe and its bind.
                return Err(format!(
                    "redis-server exited with {status} on port {}",
                    self.port
                ));
            }
            if ping(self.port, self.password.as_deref()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The binary to run, or `None` (after printing why) when it is missing and missing is
/// allowed.
fn find_binary() -> Option<PathBuf> {
    let configured = std::env::var_os("MODELWAY_REDIS_SERVER").filter(|v| !v.is_empty());
    let found = match &configured {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => on_path("redis-server"),
    };
    if found.is_some() {
        return found;
    }
    let what = match &configured {
        Some(p) => format!(
            "MODELWAY_REDIS_SERVER={} is not a file",
            Path::new(p).display()
        ),
        None => "redis-server is not on PATH".to_owned(),
    };
    missing(
        "redis-server",
        &what,
        "MODELWAY_REQUIRE_REDIS",
        "apt-get install redis-server",
        "MODELWAY_REDIS_SERVER",
    )
}

/// A port nothing listens on, for "unreachable store" tests. Like any probed port it
/// could be taken by someone else later; tests use it immediately.
pub fn unused_port() -> u16 {
    free_port().unwrap_or(1)
}

fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, timeout)
}

/// Whether the server answers `PING` with `+PONG` (after `AUTH`, if it has a password).
fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(mut s) = connect(port, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if s.set_read_timeout(timeout).is_err() || s.set_write_timeout(timeout).is_err() {
        return false;
    }
    let mut req = Vec::new();
    if let Some(p) = password {
        req.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    req.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    if s.write_all(&req).is_err() {
        return false;
    }
    let want: &[u8] = if password.is_some() {
        b"+OK\r\n+PONG\r\n"
    } else {
        b"+PONG\r\n"
    };
    let mut got = Vec::with_capacity(want.len());
    let mut buf = [0u8; 64];
    // Bounded by the read timeout and the answer's length.
    while got.len() < want.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(want)
}
