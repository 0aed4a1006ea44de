//! Child processes: every one the orchestrator starts is registered, so a failure, a
//! panic or the global watchdog kills them all; servers are read for their
//! `listening on` line under a time bound; load runs are waited for under a time bound
//! while their marker lines trigger CPU samples of the measured process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::load::{LoadReport, MARK_END, MARK_START};
use crate::procfs;

struct Registered {
    id: u64,
    name: String,
    child: Child,
}

static CHILDREN: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn children() -> MutexGuard<'static, Vec<Registered>> {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn register(name: &str, child: Child) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    children().push(Registered {
        id,
        name: name.to_owned(),
        child,
    });
    id
}

/// Kills (SIGKILL) and reaps every registered child.
pub fn kill_all() {
    let mut all = std::mem::take(&mut *children());
    for r in &mut all {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

/// Kills and reaps one registered child.
fn kill_one(id: u64) {
    let mut list = children();
    if let Some(pos) = list.iter().position(|r| r.id == id) {
        let mut r = list.remove(pos);
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

/// `Some(exit status)` once the child has exited (and unregisters it).
fn try_wait(id: u64) -> Result<Option<std::process::ExitStatus>> {
    let mut list = children();
    let Some(pos) = list.iter().position(|r| r.id == id) else {
        bail!("child {id} is not registered");
    };
    match list[pos].child.try_wait() {
        Ok(Some(status)) => {
            list.remove(pos);
            Ok(Some(status))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("waiting for {}", list[pos].name)),
    }
}

/// Kills every child when dropped: the cleanup on every exit path of a run.
pub struct KillOnDrop;

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_all();
    }
}

/// After `limit`, kills every child and exits the process: the whole run's hard bound.
pub fn global_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("bench: the whole run exceeded its hard limit of {limit:?}; killing everything");
        kill_all();
        std::process::exit(2);
    });
}

/// Where processes run: optional `taskset` pinning.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Placement {
    /// Whether `taskset` pinning is in effect.
    pub pinned: bool,
    /// The CPU for the gateway and the floor proxy.
    pub server_cpu: usize,
    /// The CPU for the load generator and the mock upstreams.
    pub driver_cpu: usize,
    /// Why pinning is off, if it is.
    pub note: Option<String>,
}

impl Placement {
    /// Pins when asked, when `taskset` works and both CPUs are usable.
    pub fn probe(want: bool, server_cpu: usize, driver_cpu: usize) -> Self {
        let unpinned = |note: &str| Self {
            pinned: false,
            server_cpu,
            driver_cpu,
            note: Some(note.to_owned()),
        };
        if !want {
            return unpinned("pinning disabled with --no-pin");
        }
        if server_cpu == driver_cpu {
            return unpinned("server and driver CPUs are the same");
        }
        for cpu in [server_cpu, driver_cpu] {
            let ok = Command::new("taskset")
                .args(["-c", &cpu.to_string(), "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return unpinned(&format!(
                    "`taskset -c {cpu}` is unavailable or CPU {cpu} is not usable; \
                     processes share all CPUs, so max req/s is not a one-core figure"
                ));
            }
        }
        Self {
            pinned: true,
            server_cpu,
            driver_cpu,
            note: None,
        }
    }

    fn command(&self, program: &Path, cpu: usize) -> Command {
        if self.pinned {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

/// Starts a guardian that SIGKILLs `pid` if this process dies without cleaning up (its
/// stdin pipe closes). A normal cleanup kills the guardian first, so it never fires
/// then. For servers that do not watch their stdin themselves (the gateway).
pub fn guard(name: &str, pid: u32) {
    if !cfg!(unix) {
        return;
    }
    let spawned = Command::new("sh")
        .args(["-c", &format!("read _ignored; kill -9 {pid} 2>/dev/null")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(child) = spawned {
        // Registered after the server: `kill_all` goes in order, so it kills the server
        // first and then the guardian, which therefore never fires on a normal exit.
        register(&format!("guard of {name}"), child);
    }
}

/// A running server.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    /// Its registry entry.
    id: u64,
}

/// Starts a server on `cpu` and waits (at most `startup`) for its `listening on` line.
pub fn start_server(
    place: &Placement,
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    cpu: usize,
    startup: Duration,
) -> Result<Server> {
    if !program.is_file() {
        bail!("{} does not exist; was it built?", program.display());
    }
    let mut cmd = place.command(program, cpu);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {name} ({})", program.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let id = register(name, child);
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = stdout {
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(i) = line.find(crate::LISTENING) {
                        let addr = line[i + crate::LISTENING.len()..].trim().to_owned();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
    }
    let addr = match rx.recv_timeout(startup) {
        Ok(a) => a,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            kill_one(id);
            bail!("{name} exited (or closed its stdout) before it was listening");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_one(id);
            bail!(
                "{name} did not print `{}` within {startup:?}",
                crate::LISTENING
            );
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{name} printed an unparsable address `{addr}`"))?;
    Ok(Server {
        name: name.to_owned(),
        pid,
        addr,
        id,
    })
}

/// `Err` naming every server that is no longer running, and how it ended. On a shared
/// machine something else may kill our processes (by name, say); the numbers of a
/// repetition in which that happened are worthless, so it is aborted (and retried).
pub fn check_alive(servers: &[&Server]) -> Result<()> {
    let mut dead = Vec::new();
    {
        let mut list = children();
        for s in servers {
            match list.iter_mut().find(|r| r.id == s.id) {
                None => dead.push(format!("{} (pid {}): no longer registered", s.name, s.pid)),
                Some(r) => {
                    if let Ok(Some(status)) = r.child.try_wait() {
                        dead.push(format!("{} (pid {}) {}", s.name, s.pid, describe(status)));
                    }
                }
            }
        }
    }
    if dead.is_empty() {
        Ok(())
    } else {
        bail!("server(s) died during the repetition: {}", dead.join("; "))
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!(
                "was killed by signal {sig}{}",
                if sig == 9 || sig == 15 {
                    " (from outside the harness?)"
                } else {
                    ""
                }
            );
        }
    }
    format!("exited with {status}")
}

/// A load run's report and the measured process's CPU over the measured window.
#[derive(Debug, Clone)]
pub struct Measured {
    pub report: LoadReport,
    /// CPU seconds the watched process used between the markers.
    pub cpu_s: Option<f64>,
    /// Wall seconds between the markers, as the orchestrator saw them.
    pub wall_s: Option<f64>,
    /// The same CPU time from the live threads' `schedstat` (nanosecond resolution).
    pub cpu_schedstat_s: Option<f64>,
}

/// Runs `loadgen` to completion (killing it after `limit`), sampling `watch`'s CPU time
/// at its marker lines.
pub fn run_load(
    place: &Placement,
    loadgen: &Path,
    args: &[String],
    watch: Option<u32>,
    clk_tck: u64,
    limit: Duration,
) -> Result<Measured> {
    let mut cmd = place.command(loadgen, place.driver_cpu);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting loadgen")?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let id = register("loadgen", child);
    let reader = std::thread::spawn(move || {
        let mut start: Option<(u64, Instant, Option<u64>)> = None;
        let mut end: Option<(u64, Instant, Option<u64>)> = None;
        let mut json = None;
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let sample = || {
                    let pid = watch?;
                    let ns = procfs::cpu_nanos(pid);
                    procfs::cpu_ticks(pid).map(|t| (t, Instant::now(), ns))
                };
                if line == MARK_START {
                    start = sample();
                } else if line == MARK_END {
                    end = sample();
                } else if line.starts_with('{') {
                    json = Some(line);
                }
            }
        }
        (start, end, json)
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let begun = Instant::now();
    let status = loop {
        if let Some(status) = try_wait(id)? {
            break status;
        }
        if begun.elapsed() > limit {
            kill_one(id);
            bail!("loadgen {} did not finish within {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (start, end, json) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the loadgen reader thread panicked"))?;
    let stderr_text = err_reader.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "loadgen {} exited with {status}: {}",
            args.join(" "),
            stderr_text.trim()
        );
    }
    let json = json.with_context(|| format!("loadgen {} printed no report", args.join(" ")))?;
    let report: LoadReport = serde_json::from_str(&json).context("parsing the loadgen report")?;
    let (cpu_s, wall_s, cpu_schedstat_s) = match (start, end) {
        (Some((t0, i0, n0)), Some((t1, i1, n1))) => (
            Some(t1.saturating_sub(t0) as f64 / clk_tck as f64),
            Some((i1 - i0).as_secs_f64()),
            n0.zip(n1).map(|(a, b)| b.saturating_sub(a) as f64 / 1e9),
        ),
        _ => (None, None, None),
    };
    Ok(Measured {
        report,
        cpu_s,
        wall_s,
        cpu_schedstat_s,
    })
}
