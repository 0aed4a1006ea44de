//! A real PostgreSQL server for tests: a fresh cluster (`initdb`) in a temporary
//! directory, started on a free `127.0.0.1` port with a password (SCRAM), waited on
//! until it accepts connections, stopped and deleted on drop.
//!
//! The binaries (`initdb`, `postgres`, `pg_isready`) are taken from
//! `$MODELWAY_POSTGRES_BIN` (a directory), else from beside `initdb` on `PATH`, else
//! from the newest `/usr/lib/postgresql/*/bin` (where Debian's `postgresql` package puts
//! them). When none is found, [`PostgresServer::start`] returns `None` (the test prints
//! a skip line and returns), unless `$CI` or `$MODELWAY_REQUIRE_POSTGRES` is set: then
//! it panics, so CI cannot pass by skipping.
//!
//! Postgres refuses to run as root: as root, the cluster belongs to and runs as
//! `nobody` (uid and gid 65534).
//!
//! ```no_run
//! let Some(pg) = modelway_testkit::PostgresServer::start() else {
//!     return; // "skipped: postgres not installed" was printed
//! };
//! assert!(pg.url().starts_with("postgres://modelway:"));
//! ```
//!
//! Only `std`: every wait is bounded and blocking, so it may be called from a test's
//! async body.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::service::{free_port, missing, on_path, required, wait_exit};

/// How long `initdb` may take (it writes a whole cluster).
const INIT_WITHIN: Duration = Duration::from_secs(60);
/// How long a started server has to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Ports tried before giving up.
const PORT_ATTEMPTS: usize = 5;
/// The user a root test runs the server as.
const NOBODY: u32 = 65_534;

/// The password every test server has; tests check it never shows.
pub const POSTGRES_PASSWORD: &str = "pg-secret-9f3e1c";

/// A `postgres` child process on `127.0.0.1`, with its cluster in a temporary directory.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Serving TLS with a certificate for `127.0.0.1` signed by this CA (a PEM file).
    ca: Option<PathBuf>,
}

impl PostgresServer {
    /// A fresh cluster with user `modelway` (password [`POSTGRES_PASSWORD`]) and
    /// database `modelway`, on a free port. `None` when Postgres is not installed and
    /// missing is allowed (a skip line is printed); panics if it cannot be started.
    pub fn start() -> Option<Self> {
        Self::start_inner(false)
    }

    /// Like [`Self::start`], serving TLS (plain connections are still accepted) with a
    /// certificate for `127.0.0.1` signed by a CA of its own, [`Self::ca_file`]. Needs
    /// the `openssl` command; `None` (a skip line printed) without it, unless required.
    pub fn start_tls() -> Option<Self> {
        if on_path("openssl").is_none() {
            if required("MODELWAY_REQUIRE_POSTGRES") {
                panic!("the Postgres TLS test needs the `openssl` command");
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped: no openssl command for the TLS test"
            );
            return None;
        }
        Self::start_inner(true)
    }

    /// The CA (PEM) that signed the TLS server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    fn start_inner(tls: bool) -> Option<Self> {
        let bin = find_bin()?;
        let dir = fresh_dir();
        let made = init(&bin, &dir).and_then(|()| {
            if tls {
                certificates(&dir).map(Some)
            } else {
                Ok(None)
            }
        });
        let ca = match made {
            Ok(ca) => ca,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("could not create a Postgres cluster: {e}");
            }
        };
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let Ok(port) = free_port() else { continue };
            let mut server = Self {
                bin: bin.clone(),
                dir: dir.clone(),
                port,
                child: None,
                ca: ca.clone(),
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => {
                    last_error = e;
                    // Not dropped: that would delete the cluster the next port needs.
                    std::mem::forget(server);
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        panic!("could not start postgres after {PORT_ATTEMPTS} ports: {last_error}\n{log}");
    }

    /// `postgres://modelway:PASSWORD@127.0.0.1:PORT/modelway`.
    pub fn url(&self) -> String {
        format!(
            "postgres://modelway:{POSTGRES_PASSWORD}@127.0.0.1:{}/modelway",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (a fast shutdown: sessions are ended) and waits for it to exit;
    /// its data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-INT");
            let deadline = Instant::now() + READY_WITHIN;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port, with the same data. Panics if
    /// it does not come up.
    pub fn resume(&mut self) {
        let mut last_error = String::new();
        // The port may linger briefly after the old process; retry, bounded.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "could not restart postgres on 127.0.0.1:{}: {last_error}",
            self.port
        );
    }

    /// Runs one SQL statement with `psql` if it is installed beside the server (for
    /// assertions on the table itself); `None` without `psql`.
    pub fn psql(&self, sql: &str) -> Option<String> {
        let psql = self.bin.join("psql");
        if !psql.is_file() {
            return None;
        }
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "modelway", "-d", "modelway", "-At", "-c", sql])
            .env("PGPASSWORD", POSTGRES_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = as_owner(Command::new(self.bin.join("postgres")));
        let log = std::fs::File::create(self.dir.join("server.log"))
            .map_err(|e| format!("server log: {e}"))?;
        chown(&self.dir.join("server.log"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=50"])
            .args(["-c", "dynamic_shared_memory_type=mmap"]);
        if self.ca.is_some() {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    self.dir.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    self.dir.join("server.key").display()
                ));
        }
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not run postgres: {e}"))?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited with {status} on port {}",
                    self.port
                ));
            }
            if self.ready() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "postgres on port {} was not ready within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server accepts connections (`pg_isready`, or a TCP connect without it).
    fn ready(&self) -> bool {
        let isready = self.bin.join("pg_isready");
        if isready.is_file() {
            return Command::new(isready)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .args(["-U", "modelway", "-d", "modelway"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        }
        TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_millis(200),
        )
        .is_ok()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `initdb` into `dir/data`, with superuser `modelway` and its password, then the
/// database `modelway`.
fn init(bin: &Path, dir: &Path) -> Result<(), String> {
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, POSTGRES_PASSWORD).map_err(|e| format!("pwfile: {e}"))?;
    chown(&pwfile);
    let mut cmd = as_owner(Command::new(bin.join("initdb")));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-U", "modelway", "--auth=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args([
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .current_dir(dir)
        .stdin(Stdio::null());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run initdb: {e}"))?;
    wait_exit(&mut child, INIT_WITHIN, "initdb")?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    create_database(bin, dir)
}

/// A CA and a server certificate for `127.0.0.1` it signed, in `dir` (`ca.crt`,
/// `server.crt`, `server.key`, the key readable by the server's user only); the CA's
/// path.
fn certificates(dir: &Path) -> Result<PathBuf, String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| format!("server.ext: {e}"))?;
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    let subjects = ["/CN=modelway test CA", "/CN=127.0.0.1", ""];
    for (args, subject) in steps.iter().zip(subjects) {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        if !subject.is_empty() {
            cmd.args(["-subj", subject, "-days", "2"]);
        }
        let out = cmd.output().map_err(|e| format!("openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let key = dir.join("server.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("server.key: {e}"))?;
    }
    chown(&key);
    chown(&dir.join("server.crt"));
    Ok(dir.join("ca.crt"))
}

/// Creates the `modelway` database in single-user mode (no server, no port).
fn create_database(bin: &Path, dir: &Path) -> Result<(), String> {
    let mut cmd = as_owner(Command::new(bin.join("postgres")));
    cmd.args(["--single", "-D"])
        .arg(dir.join("data"))
        .arg("postgres")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not run postgres --single: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"CREATE DATABASE modelway OWNER modelway;\n");
    }
    wait_exit(&mut child, INIT_WITHIN, "postgres --single")?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("postgres --single: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "CREATE DATABASE failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A new empty directory under the temp dir, owned by the user the server runs as.
fn fresh_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    // As root, under /tmp: a `$TMPDIR` inside root's home would be closed to `nobody`.
    let base = if is_root() && Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "modelway-pg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("could not create {}: {e}", dir.display());
    }
    chown(&dir);
    dir
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// The command, run as `nobody` when the test runs as root.
fn as_owner(mut cmd: Command) -> Command {
    #[cfg(unix)]
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// Hands `path` to the user the server runs as (when the test runs as root).
fn chown(path: &Path) {
    #[cfg(unix)]
    if is_root() {
        let _ = std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY));
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The directory holding `initdb` and `postgres`, or `None` (after printing why) when
/// it is missing and missing is allowed.
fn find_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let configured = std::env::var_os("MODELWAY_POSTGRES_BIN").filter(|v| !v.is_empty());
    let found = match &configured {
        Some(p) => Some(PathBuf::from(p)).filter(|d| has(d)),
        None => on_path("initdb")
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| has(d))
            .or_else(newest_debian_bin),
    };
    if found.is_some() {
        return found;
    }
    let what = match &configured {
        Some(p) => format!(
            "MODELWAY_POSTGRES_BIN={} holds no initdb and postgres",
            Path::new(p).display()
        ),
        None => "no initdb on PATH nor in /usr/lib/postgresql/*/bin".to_owned(),
    };
    missing(
        "postgres",
        &what,
        "MODELWAY_REQUIRE_POSTGRES",
        "apt-get install postgresql",
        "MODELWAY_POSTGRES_BIN",
    )
}

/// `/usr/lib/postgresql/<newest>/bin`, where Debian installs the server.
pub fn newest_debian_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
