//! The orchestrator behind `cargo xtask bench` (binary `bench-run`).
//!
//! Per path (a row of [`PATHS`]) and per repetition it starts fresh processes — two mock
//! upstreams (answering at 0 ms and at `slow_ms`) and the load generator on the driver
//! CPU, two floor proxies and the gateway on the server CPU — and measures three
//! targets with the same load: `direct` (loadgen → upstream), `floor`
//! (→ floor-proxy → upstream) and `modelway` (→ gateway → upstream), all three spoken
//! to in the path's client dialect. Targets run one after another within each phase, in
//! an order rotated every repetition.

mod procs;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::load::LoadReport;
use crate::procfs::{self, Machine};
use crate::wire::ClientDialect;
pub use procs::{kill_all, Placement};
use procs::{run_load, start_server, KillOnDrop, Measured, Server};

/// What `bench-run` was asked to do.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Where `modelway`, `bench-upstream`, `floor-proxy` and `loadgen` are.
    pub bin_dir: PathBuf,
    /// Where the JSON (and the table as text and Markdown) go.
    pub out_dir: PathBuf,
    pub smoke: bool,
    pub reps: usize,
    pub pin: bool,
    pub server_cpu: usize,
    pub driver_cpu: usize,
    /// Measure only the path of this name (`--only openai-compatible`).
    pub only: Option<String>,
}

/// One path through the gateway: the provider kind it exercises, the dialect the mock
/// upstream must speak for it and the one the client speaks to all three targets.
/// Adding the Anthropic or Gemini measurements is giving their row a dialect (and
/// teaching `bench-upstream` that dialect).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PathSpec {
    pub name: &'static str,
    /// The provider `kind` in the generated gateway config.
    pub kind: &'static str,
    /// Appended to the upstream's address to form the provider's `base_url`.
    pub base_path: &'static str,
    /// `bench-upstream --dialect`; `None`: not measurable yet.
    pub dialect: Option<&'static str>,
    /// What loadgen speaks to direct, floor and modelway alike (`loadgen --dialect`).
    /// Direct and floor reach the mock's endpoint of that dialect, so a client dialect
    /// other than OpenAI needs an upstream `dialect` that answers it.
    pub client: ClientDialect,
    /// CPU per request budget, as a multiple of the floor proxy's.
    pub cpu_budget: f64,
    /// Also measured with tracing on (100% sampled, OTLP to a local receiver), against
    /// this budget.
    pub traced_cpu_budget: Option<f64>,
    /// Also measured with one gateway key that has an rpm limit (memory store),
    /// against this budget.
    pub keyed_cpu_budget: Option<f64>,
    /// Also measured with the SQLite usage ledger on (every request priced and
    /// recorded), against this budget.
    pub ledger_cpu_budget: Option<f64>,
}

/// Every path the report has a row for.
pub const PATHS: &[PathSpec] = &[
    PathSpec {
        name: "openai-compatible",
        kind: "openai-compatible",
        base_path: "/v1",
        dialect: Some("openai"),
        client: ClientDialect::Openai,
        cpu_budget: 1.2,
        traced_cpu_budget: Some(1.3),
        keyed_cpu_budget: Some(1.25),
        ledger_cpu_budget: Some(1.3),
    },
    PathSpec {
        name: "anthropic",
        kind: "anthropic",
        base_path: "",
        dialect: Some("anthropic"),
        client: ClientDialect::Openai,
        cpu_budget: 1.6,
        traced_cpu_budget: None,
        keyed_cpu_budget: None,
        ledger_cpu_budget: None,
    },
    PathSpec {
        name: "gemini",
        kind: "gemini",
        base_path: "",
        dialect: Some("gemini"),
        client: ClientDialect::Openai,
        cpu_budget: 1.6,
        traced_cpu_budget: None,
        keyed_cpu_budget: None,
        ledger_cpu_budget: None,
    },
    // Anthropic Messages in, Anthropic out: the gateway forwards the client's body with
    // only `model` spliced and the answer and events byte for byte, so its floor is the
    // same byte proxy carrying the same Messages traffic (issue #15).
    PathSpec {
        name: "anthropic-messages",
        kind: "anthropic",
        base_path: "",
        dialect: Some("anthropic"),
        client: ClientDialect::Anthropic,
        cpu_budget: 1.2,
        traced_cpu_budget: None,
        keyed_cpu_budget: None,
        ledger_cpu_budget: None,
    },
];

/// Attempts per repetition before the run fails.
const MAX_ATTEMPTS: usize = 3;

/// The three things measured with the same load.
pub const TARGETS: [&str; 3] = ["direct", "floor", "modelway"];

/// Sizes and durations of every phase.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub idle_wait_s: f64,
    /// The slow mock's answer delay.
    pub slow_ms: u64,
    pub c1_warmup: u64,
    pub c1_requests: u64,
    pub c1_slow_warmup: u64,
    pub c1_slow_requests: u64,
    pub rates: Vec<f64>,
    pub rate_warmup_s: f64,
    pub rate_secs: f64,
    pub max_concurrency: usize,
    pub max_warmup_s: f64,
    pub max_secs: f64,
    pub stream_chunks: u32,
    pub stream_interval_ms: u64,
    pub stream_requests: u64,
    pub stream_concurrency: usize,
    pub stream_warmup: u64,
    pub startup_timeout_s: f64,
}

impl Profile {
    pub fn full() -> Self {
        Self {
            idle_wait_s: 1.0,
            slow_ms: 50,
            c1_warmup: 300,
            c1_requests: 3000,
            c1_slow_warmup: 3,
            c1_slow_requests: 100,
            rates: vec![500.0, 2000.0],
            rate_warmup_s: 1.0,
            rate_secs: 4.0,
            max_concurrency: 32,
            max_warmup_s: 1.0,
            max_secs: 4.0,
            stream_chunks: 100,
            stream_interval_ms: 5,
            stream_requests: 60,
            stream_concurrency: 10,
            stream_warmup: 1,
            startup_timeout_s: 30.0,
        }
    }

    /// Seconds, not minutes: the same code path with tiny sizes.
    pub fn smoke() -> Self {
        Self {
            idle_wait_s: 0.3,
            slow_ms: 50,
            c1_warmup: 10,
            c1_requests: 100,
            c1_slow_warmup: 1,
            c1_slow_requests: 4,
            rates: vec![500.0, 2000.0],
            rate_warmup_s: 0.1,
            rate_secs: 0.3,
            max_concurrency: 8,
            max_warmup_s: 0.1,
            max_secs: 0.3,
            stream_chunks: 20,
            stream_interval_ms: 2,
            stream_requests: 6,
            stream_concurrency: 3,
            stream_warmup: 1,
            startup_timeout_s: 30.0,
        }
    }

    fn stream_secs(&self) -> f64 {
        let rounds = self.stream_warmup
            + self
                .stream_requests
                .div_ceil(self.stream_concurrency as u64);
        rounds as f64 * f64::from(self.stream_chunks) * self.stream_interval_ms as f64 / 1000.0
    }

    fn c1_secs(&self, slow: bool) -> f64 {
        if slow {
            (self.c1_slow_warmup + self.c1_slow_requests) as f64
                * (self.slow_ms as f64 / 1000.0 + 0.002)
        } else {
            (self.c1_warmup + self.c1_requests) as f64 * 0.001
        }
    }

    /// A generous estimate of one repetition's length, for the global hard bound.
    fn rep_secs(&self) -> f64 {
        let per_target = self.c1_secs(false)
            + self.c1_secs(true)
            + 2.0 * self.rates.len() as f64 * (self.rate_warmup_s + self.rate_secs)
            + self.max_warmup_s
            + self.max_secs
            + self.stream_secs();
        3.0 * per_target + self.idle_wait_s + 5.0
    }
}

/// A repetition's figures: metric → target → value.
pub type Figures = BTreeMap<String, BTreeMap<String, f64>>;

/// One repetition of one path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rep {
    pub figures: Figures,
    /// Phase → target → the load report and CPU window, as measured.
    pub raw: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Rep {
    fn set(&mut self, metric: &str, target: &str, value: f64) {
        self.figures
            .entry(metric.to_owned())
            .or_default()
            .insert(target.to_owned(), value);
    }

    fn add(&mut self, metric: &str, target: &str, value: f64) {
        *self
            .figures
            .entry(metric.to_owned())
            .or_default()
            .entry(target.to_owned())
            .or_insert(0.0) += value;
    }

    fn get(&self, metric: &str, target: &str) -> Option<f64> {
        self.figures.get(metric)?.get(target).copied()
    }
}

/// The outcome of one path.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub spec: PathSpec,
    /// `measured`, or why not (`n/a — …`).
    pub status: String,
    pub reps: Vec<Rep>,
    /// Repetition attempts thrown away (a server died, a phase failed), and why.
    pub aborted: Vec<String>,
}

struct Ctx {
    opts: Opts,
    place: Placement,
    profile: Profile,
    clk_tck: u64,
    /// `/proc/loadavg` when the run started.
    load_before: String,
}

impl Ctx {
    fn bin(&self, name: &str) -> PathBuf {
        self.opts
            .bin_dir
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }

    fn startup(&self) -> Duration {
        Duration::from_secs_f64(self.profile.startup_timeout_s)
    }
}

/// Runs everything and writes the report; `Err` when the harness could not measure (or,
/// for `--smoke`, when anything failed or a stream arrived incomplete).
pub fn run(opts: Opts) -> Result<()> {
    let _cleanup = KillOnDrop;
    let profile = if opts.smoke {
        Profile::smoke()
    } else {
        Profile::full()
    };
    let reps = opts.reps.max(1);
    let measurable = PATHS.iter().filter(|p| p.dialect.is_some()).count() as f64;
    // Twice the estimate, times the retries a repetition may need, plus a minute.
    let limit = Duration::from_secs_f64(
        profile.rep_secs() * reps as f64 * measurable * 2.0 * MAX_ATTEMPTS as f64 / 2.0 + 60.0,
    );
    procs::global_watchdog(limit);
    let machine = Machine::probe();
    let place = Placement::probe(opts.pin, opts.server_cpu, opts.driver_cpu);
    if let Some(note) = &place.note {
        eprintln!("bench: not pinning: {note}");
    }
    std::fs::create_dir_all(opts.out_dir.join("tmp"))
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let ctx = Ctx {
        opts: Opts { reps, ..opts },
        place,
        profile,
        clk_tck: machine.clk_tck,
        load_before: procfs::load_average(),
    };
    eprintln!(
        "bench: {} run, {reps} repetition(s), hard limit {limit:?}",
        if ctx.opts.smoke { "smoke" } else { "full" }
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for spec in PATHS {
        if ctx.opts.only.as_deref().is_some_and(|o| o != spec.name) {
            continue;
        }
        let dialect = spec.dialect.filter(|_| provider_builds(&ctx, spec));
        let Some(dialect) = dialect else {
            let status = unmeasured_status(&ctx, spec);
            eprintln!("bench: {}: {status}", spec.name);
            results.push(PathResult {
                spec: *spec,
                status,
                reps: Vec::new(),
                aborted: Vec::new(),
            });
            continue;
        };
        let mut path_reps = Vec::new();
        let mut aborted = Vec::new();
        for rep in 0..reps {
            let mut attempt = 1;
            loop {
                eprintln!(
                    "bench: {} — repetition {}/{reps}{}",
                    spec.name,
                    rep + 1,
                    if attempt > 1 {
                        format!(" (attempt {attempt})")
                    } else {
                        String::new()
                    }
                );
                let r = run_rep(&ctx, spec, dialect, rep);
                kill_all();
                match r {
                    Ok(r) => {
                        path_reps.push(r);
                        break;
                    }
                    Err(e) if attempt < MAX_ATTEMPTS => {
                        eprintln!("bench: repetition aborted, retrying: {e:#}");
                        aborted.push(format!("repetition {}: {e:#}", rep + 1));
                        attempt += 1;
                    }
                    Err(e) => {
                        return Err(e.context(format!(
                            "repetition {} failed {MAX_ATTEMPTS} times",
                            rep + 1
                        )))
                    }
                }
            }
        }
        results.push(PathResult {
            spec: *spec,
            status: "measured".into(),
            reps: path_reps,
            aborted,
        });
    }
    let elapsed = started.elapsed();
    eprintln!("bench: measured in {:.1} s", elapsed.as_secs_f64());
    report::write(&ctx, &machine, &results, elapsed)?;
    if ctx.opts.smoke {
        smoke_check(&results)?;
    }
    Ok(())
}

/// Whether the gateway accepts a provider of this path's kind (`modelway check`).
fn provider_builds(ctx: &Ctx, spec: &PathSpec) -> bool {
    let cfg = format!(
        "[providers.up]\nkind = \"{}\"\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"bench\"\n\n\
         [routing]\ndefault_provider = \"up\"\n",
        spec.kind
    );
    let file = ctx
        .opts
        .out_dir
        .join("tmp")
        .join(format!("check-{}.toml", spec.name));
    std::fs::write(&file, cfg).is_ok()
        && std::process::Command::new(ctx.bin("modelway"))
            .arg("check")
            .arg("--config")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Why a path is not measured: is the provider itself missing?
fn unmeasured_status(ctx: &Ctx, spec: &PathSpec) -> String {
    let built = provider_builds(ctx, spec);
    if built {
        "n/a — provider built, but bench-upstream does not speak its dialect yet".into()
    } else {
        "n/a — provider not built yet".into()
    }
}

/// A latency phase: key, targets, loadgen mode arguments, expected seconds, open loop?
type Phase<'a> = (String, &'a [Target], Vec<String>, f64, bool);

struct Target {
    name: &'static str,
    addr: SocketAddr,
    model: String,
    /// What loadgen speaks to it.
    client: ClientDialect,
    /// The process whose CPU time is measured (none for `direct`).
    pid: Option<u32>,
}

fn targets(
    upstream: &Server,
    floor: &Server,
    gateway: &Server,
    route: &str,
    client: ClientDialect,
) -> Vec<Target> {
    vec![
        Target {
            name: "direct",
            addr: upstream.addr,
            model: crate::wire::UPSTREAM_MODEL.into(),
            client,
            pid: None,
        },
        Target {
            name: "floor",
            addr: floor.addr,
            model: crate::wire::UPSTREAM_MODEL.into(),
            client,
            pid: Some(floor.pid),
        },
        Target {
            name: "modelway",
            addr: gateway.addr,
            model: route.into(),
            client,
            pid: Some(gateway.pid),
        },
    ]
}

/// The targets in this repetition's order (rotated, so no target is always first).
fn rotated(targets: &[Target], rep: usize) -> Vec<&Target> {
    let n = targets.len();
    (0..n).map(|i| &targets[(i + rep) % n]).collect()
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 100.0).round() / 100.0
}

fn run_rep(ctx: &Ctx, spec: &PathSpec, dialect: &str, rep: usize) -> Result<Rep> {
    let p = &ctx.profile;
    let place = &ctx.place;
    let upstream = |name: &str, latency: u64| {
        let args: Vec<String> = [
            "--latency-ms",
            &latency.to_string(),
            "--chunks",
            &p.stream_chunks.to_string(),
            "--chunk-interval-ms",
            &p.stream_interval_ms.to_string(),
            "--dialect",
            dialect,
            "--exit-on-stdin-eof",
        ]
        .map(str::to_owned)
        .to_vec();
        start_server(
            place,
            name,
            &ctx.bin("bench-upstream"),
            &args,
            &[],
            place.driver_cpu,
            ctx.startup(),
        )
    };
    let up_fast = upstream("upstream-0ms", 0)?;
    let up_slow = upstream(&format!("upstream-{}ms", p.slow_ms), p.slow_ms)?;
    let floor = |name: &str, up: &Server| {
        let args = [
            "--upstream".to_owned(),
            up.addr.to_string(),
            "--exit-on-stdin-eof".to_owned(),
        ];
        start_server(
            place,
            name,
            &ctx.bin("floor-proxy"),
            &args,
            &[],
            place.server_cpu,
            ctx.startup(),
        )
    };
    let floor_fast = floor("floor-0ms", &up_fast)?;
    let floor_slow = floor(&format!("floor-{}ms", p.slow_ms), &up_slow)?;
    let slow_route = format!("bench-{}ms", p.slow_ms);
    let cfg = format!(
        "# generated by bench-run\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [providers.up]\nkind = \"{kind}\"\nbase_url = \"http://{fast}{base}\"\napi_key = \"bench\"\n\n\
         [providers.up_slow]\nkind = \"{kind}\"\nbase_url = \"http://{slow}{base}\"\napi_key = \"bench\"\n\n\
         [routing]\ndefault_provider = \"up\"\n\n\
         [[routes]]\nname = \"bench\"\ntargets = [\"up/{model}\"]\n\n\
         [[routes]]\nname = \"{slow_route}\"\ntargets = [\"up_slow/{model}\"]\n",
        kind = spec.kind,
        fast = up_fast.addr,
        slow = up_slow.addr,
        base = spec.base_path,
        model = crate::wire::UPSTREAM_MODEL,
    );
    let cfg_path = ctx
        .opts
        .out_dir
        .join("tmp")
        .join(format!("modelway-{}.toml", spec.name));
    std::fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;
    let gateway = start_server(
        place,
        "modelway",
        &ctx.bin("modelway"),
        &[
            "--config".to_owned(),
            cfg_path.display().to_string(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
        &[("RUST_LOG", "warn")],
        place.server_cpu,
        ctx.startup(),
    )?;

    procs::guard("modelway", gateway.pid);
    let servers = [&up_fast, &up_slow, &floor_fast, &floor_slow, &gateway];

    let mut out = Rep::default();
    std::thread::sleep(Duration::from_secs_f64(p.idle_wait_s));
    for (name, server) in [("floor", &floor_fast), ("modelway", &gateway)] {
        if let Some((rss, _)) = procfs::rss_kib(server.pid) {
            out.set("rss.idle_mib", name, mib(rss));
        }
    }

    let fast = targets(&up_fast, &floor_fast, &gateway, "bench", spec.client);
    let slow = targets(&up_slow, &floor_slow, &gateway, &slow_route, spec.client);

    // Latency phases: closed loop at c=1, then the open-loop rates, each against the
    // fast and the slow mock.
    let mut phases: Vec<Phase<'_>> = Vec::new();
    phases.push((
        "c1_0ms".into(),
        &fast,
        argv(&[
            &"latency",
            &"--concurrency",
            &1,
            &"--requests",
            &p.c1_requests,
            &"--warmup",
            &p.c1_warmup,
        ]),
        p.c1_secs(false),
        false,
    ));
    phases.push((
        format!("c1_{}ms", p.slow_ms),
        &slow,
        argv(&[
            &"latency",
            &"--concurrency",
            &1,
            &"--requests",
            &p.c1_slow_requests,
            &"--warmup",
            &p.c1_slow_warmup,
        ]),
        p.c1_secs(true),
        false,
    ));
    for (set, ms) in [(&fast, 0), (&slow, p.slow_ms)] {
        for &rate in &p.rates {
            phases.push((
                format!("r{rate}_{ms}ms"),
                set,
                argv(&[
                    &"rate",
                    &"--rps",
                    &rate,
                    &"--duration",
                    &p.rate_secs,
                    &"--warmup",
                    &p.rate_warmup_s,
                ]),
                p.rate_warmup_s + p.rate_secs,
                true,
            ));
        }
    }
    for (key, set, args, secs, rate) in &phases {
        eprint!("  {key:<12}");
        for t in rotated(set, rep) {
            eprint!(" {}", t.name);
            let m = load(ctx, t, args, *secs)?;
            procs::check_alive(&servers)?;
            record_latency(&mut out, key, t, &m, *rate);
        }
        eprintln!();
        for who in ["floor", "modelway"] {
            for q in ["p50", "p99"] {
                let metric = format!("{key}.{q}");
                if let (Some(v), Some(d)) = (out.get(&metric, who), out.get(&metric, "direct")) {
                    out.set(&format!("{key}.added_{q}"), who, v - d);
                }
            }
        }
    }

    if spec.traced_cpu_budget.is_some() {
        let tracing = format!(
            "[telemetry]\notlp_endpoint = \"http://{}\"\notlp_protocol = \"http/protobuf\"\nsample_ratio = 1.0\n",
            up_fast.addr
        );
        let variant = Variant {
            tag: "traced",
            prefix: &tracing,
            // The spec's batch defaults but a 100 ms schedule, so the phase exports as it
            // goes.
            envs: &[("RUST_LOG", "warn"), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
            api_key: None,
        };
        variant_phase(ctx, &cfg_path, spec.client, &variant, &mut out)?;
        procs::check_alive(&servers)?;
    }
    if spec.keyed_cpu_budget.is_some() {
        // One key whose rpm is checked on every request but never reached.
        let keyed = format!(
            "[auth]\nkeys = [{{ name = \"bench\", key = \"{BENCH_KEY}\", rpm = 1000000 }}]\n"
        );
        let variant = Variant {
            tag: "keyed",
            prefix: &keyed,
            envs: &[("RUST_LOG", "warn")],
            api_key: Some(BENCH_KEY),
        };
        variant_phase(ctx, &cfg_path, spec.client, &variant, &mut out)?;
        procs::check_alive(&servers)?;
    }
    if spec.ledger_cpu_budget.is_some() {
        // Every request priced and written to a SQLite ledger beside the config.
        // Absolute: a relative ledger path is read against the config file's directory.
        let db = std::path::absolute(cfg_path.with_extension(format!("usage-{rep}.db")))?;
        let _ = std::fs::remove_file(&db);
        let ledger = format!(
            "[usage]\nledger = \"sqlite:{}\"\n\n[[usage.prices]]\nmodel = \"up/bench-model\"\ninput = 0.15\noutput = 0.6\n",
            db.display()
        );
        let variant = Variant {
            tag: "ledger",
            prefix: &ledger,
            envs: &[("RUST_LOG", "warn")],
            api_key: None,
        };
        variant_phase(ctx, &cfg_path, spec.client, &variant, &mut out)?;
        procs::check_alive(&servers)?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }

    eprint!("  {:<12}", "max");
    let max_args = argv(&[
        &"max",
        &"--concurrency",
        &p.max_concurrency,
        &"--duration",
        &p.max_secs,
        &"--warmup",
        &p.max_warmup_s,
    ]);
    for t in rotated(&fast, rep) {
        eprint!(" {}", t.name);
        let m = load(ctx, t, &max_args, p.max_warmup_s + p.max_secs)?;
        procs::check_alive(&servers)?;
        out.set("max.rps", t.name, m.report.achieved_rps);
        if let Some(l) = &m.report.latency {
            out.set("max.p50", t.name, l.p50_us);
        }
        if let (Some(cpu), true) = (m.cpu_s, m.report.ok > 0) {
            let per_req = cpu * 1e6 / m.report.ok as f64;
            out.set("cpu.max", t.name, (per_req * 100.0).round() / 100.0);
        }
        if let (Some(cpu), Some(wall)) = (m.cpu_s, m.wall_s) {
            if wall > 0.0 {
                out.set(
                    "max.cpu_util_pct",
                    t.name,
                    (cpu / wall * 1000.0).round() / 10.0,
                );
            }
        }
        out.add("errors", t.name, m.report.errors as f64);
        save_raw(&mut out, "max", t.name, &m);
    }
    eprintln!();

    eprint!("  {:<12}", "stream");
    let stream_args = argv(&[
        &"stream",
        &"--requests",
        &p.stream_requests,
        &"--concurrency",
        &p.stream_concurrency,
        &"--chunks",
        &p.stream_chunks,
        &"--warmup",
        &p.stream_warmup,
    ]);
    for t in rotated(&fast, rep) {
        eprint!(" {}", t.name);
        let m = load(ctx, t, &stream_args, p.stream_secs())?;
        procs::check_alive(&servers)?;
        record_stream(&mut out, t.name, &m.report);
        save_raw(&mut out, "stream", t.name, &m);
    }
    eprintln!();

    let peak = |servers: &[&Server]| {
        servers
            .iter()
            .filter_map(|s| procfs::rss_kib(s.pid))
            .map(|(_, hwm)| hwm)
            .max()
    };
    if let Some(kib) = peak(&[&floor_fast, &floor_slow]) {
        out.set("rss.peak_mib", "floor", mib(kib));
    }
    if let Some(kib) = peak(&[&gateway]) {
        out.set("rss.peak_mib", "modelway", mib(kib));
    }
    Ok(out)
}

/// The key of the keyed phase.
const BENCH_KEY: &str = "sk-bench-key";

/// A second gateway with the same routes and something more.
struct Variant<'a> {
    /// `traced`, `keyed` or `ledger`: the phase's key prefix.
    tag: &'static str,
    /// Config put before the routes.
    prefix: &'a str,
    envs: &'a [(&'a str, &'a str)],
    /// The key loadgen sends.
    api_key: Option<&'a str>,
}

/// The top open-loop rate against a [`Variant`] gateway: `traced` (tracing on, every
/// request sampled, spans exported over OTLP http/protobuf to the fast mock, which
/// accepts `POST /v1/traces`), `keyed` (one gateway key with an rpm limit, sent by the
/// load generator) or `ledger`. Recorded under `{tag}_r{rate}_0ms`, beside the floor's
/// figures of the same rate copied under that key; the traced phase also records the
/// spans the gateway exported and dropped.
fn variant_phase(
    ctx: &Ctx,
    cfg_path: &std::path::Path,
    client: ClientDialect,
    v: &Variant<'_>,
    out: &mut Rep,
) -> Result<()> {
    let Variant {
        tag,
        prefix,
        envs,
        api_key,
    } = *v;
    let p = &ctx.profile;
    let top = p.rates.iter().copied().fold(0.0, f64::max);
    let base = std::fs::read_to_string(cfg_path)?;
    let cfg = format!(
        "{prefix}\n{}",
        base.replace("# generated by bench-run\n", "")
    );
    let variant_path = cfg_path.with_extension(format!("{tag}.toml"));
    std::fs::write(&variant_path, format!("# generated by bench-run\n{cfg}"))?;
    let name = format!("modelway-{tag}");
    let gw = start_server(
        &ctx.place,
        &name,
        &ctx.bin("modelway"),
        &[
            "--config".to_owned(),
            variant_path.display().to_string(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
        envs,
        ctx.place.server_cpu,
        ctx.startup(),
    )?;
    procs::guard(&name, gw.pid);
    let key = format!("{tag}_r{top}_0ms");
    let t = Target {
        name: "modelway",
        addr: gw.addr,
        model: "bench".into(),
        client,
        pid: Some(gw.pid),
    };
    let mut args = Vec::new();
    if let Some(k) = api_key {
        args.extend(["--api-key".to_owned(), k.to_owned()]);
    }
    args.extend(argv(&[
        &"rate",
        &"--rps",
        &top,
        &"--duration",
        &p.rate_secs,
        &"--warmup",
        &p.rate_warmup_s,
    ]));
    eprint!("  {key:<12} modelway({tag})");
    let m = load(ctx, &t, &args, p.rate_warmup_s + p.rate_secs)?;
    procs::check_alive(&[&gw])?;
    record_latency(out, &key, &t, &m, true);
    // For the smoke check: every request of the phase answered (a refused key would not).
    save_raw(out, &key, "modelway", &m);
    eprintln!();
    // The floor's figures at the same rate, to compare against.
    let plain = format!("r{top}_0ms");
    for (from, to) in [
        (format!("cpu.{plain}"), format!("cpu.{key}")),
        (format!("cpu_ns.{plain}"), format!("cpu_ns.{key}")),
        (format!("{plain}.p50"), format!("{key}.p50")),
        (format!("{plain}.p99"), format!("{key}.p99")),
    ] {
        for who in ["floor", "direct"] {
            if let Some(v) = out.get(&from, who) {
                out.set(&to, who, v);
            }
        }
    }
    if tag != "traced" {
        return Ok(());
    }
    // Give the last batch its schedule, then read what was exported and dropped.
    std::thread::sleep(Duration::from_millis(500));
    if let Some(text) = http_get(gw.addr, "/metrics") {
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        out.set(
            "traced.spans_exported",
            "modelway",
            sum("modelway_telemetry_spans_exported_total"),
        );
        out.set(
            "traced.spans_dropped",
            "modelway",
            sum("modelway_telemetry_spans_dropped_total"),
        );
    }
    Ok(())
}

/// A plain HTTP/1.0 GET's body, or `None` (bounded by a 5 s timeout).
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// Command-line words from mixed values.
fn argv(items: &[&dyn std::fmt::Display]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn load(ctx: &Ctx, t: &Target, mode: &[String], expected_s: f64) -> Result<Measured> {
    let mut args = vec![
        "--addr".to_owned(),
        t.addr.to_string(),
        "--model".to_owned(),
        t.model.clone(),
        "--dialect".to_owned(),
        t.client.as_str().to_owned(),
        "--deadline-s".to_owned(),
        format!("{:.0}", expected_s * 2.0 + 20.0),
        "--timeout-s".to_owned(),
        "10".to_owned(),
    ];
    args.extend(mode.iter().cloned());
    run_load(
        &ctx.place,
        &ctx.bin("loadgen"),
        &args,
        t.pid,
        ctx.clk_tck,
        Duration::from_secs_f64(expected_s * 2.0 + 30.0),
    )
}

fn save_raw(out: &mut Rep, phase: &str, target: &str, m: &Measured) {
    let v = serde_json::json!({
        "report": m.report,
        "cpu_s": m.cpu_s,
        "cpu_schedstat_s": m.cpu_schedstat_s,
        "wall_s": m.wall_s,
    });
    out.raw
        .entry(phase.to_owned())
        .or_default()
        .insert(target.to_owned(), v);
}

fn record_latency(out: &mut Rep, key: &str, t: &Target, m: &Measured, rate: bool) {
    let r: &LoadReport = &m.report;
    if let Some(l) = &r.latency {
        out.set(&format!("{key}.p50"), t.name, l.p50_us);
        out.set(&format!("{key}.p99"), t.name, l.p99_us);
    }
    out.add("errors", t.name, r.errors as f64);
    if rate {
        if let Some(lag) = &r.send_lag {
            out.set(&format!("{key}.send_lag_p99"), t.name, lag.p99_us);
        }
        if let (Some(cpu), true) = (m.cpu_s, r.requests > 0) {
            let per_req = cpu * 1e6 / r.requests as f64;
            out.set(
                &format!("cpu.{key}"),
                t.name,
                (per_req * 10.0).round() / 10.0,
            );
        }
        if let (Some(cpu), true) = (m.cpu_schedstat_s, r.requests > 0) {
            let per_req = cpu * 1e6 / r.requests as f64;
            out.set(
                &format!("cpu_ns.{key}"),
                t.name,
                (per_req * 10.0).round() / 10.0,
            );
        }
    }
    save_raw(out, key, t.name, m);
}

fn record_stream(out: &mut Rep, target: &str, r: &LoadReport) {
    out.add("errors", target, r.errors as f64);
    let Some(st) = &r.stream else { return };
    let total = st.complete + st.incomplete;
    if total > 0 {
        out.set(
            "stream.complete_pct",
            target,
            (st.complete as f64 / total as f64 * 1000.0).round() / 10.0,
        );
    }
    let pairs = [
        ("ttfb", &st.ttfb),
        ("ttfc", &st.ttfc),
        ("gap", &st.max_gap),
        ("transit", &st.transit),
    ];
    for (name, summary) in pairs {
        if let Some(s) = summary {
            out.set(&format!("stream.{name}_p50"), target, s.p50_us);
            out.set(&format!("stream.{name}_p99"), target, s.p99_us);
            out.set(&format!("stream.{name}_max"), target, s.max_us);
        }
    }
}

/// The smoke run's only assertions: every phase produced answers, nothing failed, and
/// every stream arrived complete. Timings are not judged.
fn smoke_check(results: &[PathResult]) -> Result<()> {
    let mut problems = Vec::new();
    for path in results.iter().filter(|p| !p.reps.is_empty()) {
        for (i, rep) in path.reps.iter().enumerate() {
            for (phase, by_target) in &rep.raw {
                // The tracing-on phase runs the gateway alone.
                let targets: &[&str] = if ["traced_", "keyed_", "ledger_"]
                    .iter()
                    .any(|p| phase.starts_with(p))
                {
                    &["modelway"]
                } else {
                    &TARGETS
                };
                for &target in targets {
                    match by_target.get(target) {
                        None => problems
                            .push(format!("{}/{phase}/{target}: did not run", path.spec.name)),
                        Some(v) => {
                            let ok = v["report"]["ok"].as_u64().unwrap_or(0);
                            let errors = v["report"]["errors"].as_u64().unwrap_or(0);
                            if ok == 0 || errors > 0 {
                                problems.push(format!(
                                    "{}/{phase}/{target} (rep {}): {ok} ok, {errors} errors {}",
                                    path.spec.name,
                                    i + 1,
                                    v["report"]["error_samples"]
                                ));
                            }
                        }
                    }
                }
            }
            if path.spec.traced_cpu_budget.is_some()
                && !rep
                    .get("traced.spans_exported", "modelway")
                    .is_some_and(|n| n > 0.0)
            {
                problems.push(format!(
                    "{}/traced: the gateway exported no spans to the local receiver",
                    path.spec.name
                ));
            }
            for target in TARGETS {
                if rep.get("stream.complete_pct", target) != Some(100.0) {
                    problems.push(format!(
                        "{}/stream/{target}: streams incomplete",
                        path.spec.name
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        eprintln!("bench: smoke OK (every phase ran, no errors, every stream complete)");
        Ok(())
    } else {
        bail!("bench smoke failed:\n  {}", problems.join("\n  "))
    }
}

/// `bench-run` arguments, parsed by hand to keep the binary's surface small.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Opts> {
    let mut opts = Opts {
        bin_dir: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(".")),
        out_dir: PathBuf::from("target/bench"),
        smoke: false,
        reps: 3,
        pin: true,
        server_cpu: 0,
        driver_cpu: 1,
        only: None,
    };
    let mut reps_given = false;
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--smoke" => opts.smoke = true,
            "--no-pin" => opts.pin = false,
            "--reps" => {
                opts.reps = value("--reps")?.parse().context("--reps")?;
                reps_given = true;
            }
            "--bin-dir" => opts.bin_dir = value("--bin-dir")?.into(),
            "--only" => opts.only = Some(value("--only")?),
            "--out" => opts.out_dir = value("--out")?.into(),
            "--server-cpu" => {
                opts.server_cpu = value("--server-cpu")?.parse().context("--server-cpu")?
            }
            "--driver-cpu" => {
                opts.driver_cpu = value("--driver-cpu")?.parse().context("--driver-cpu")?
            }
            "-h" | "--help" => bail!("{}", USAGE),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if opts.smoke && !reps_given {
        opts.reps = 1;
    }
    if opts.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if let Some(only) = &opts.only {
        if !PATHS.iter().any(|p| p.name == only) {
            bail!("--only: no path is named `{only}`\n{USAGE}");
        }
    }
    Ok(opts)
}

pub const USAGE: &str = "\
usage: bench-run [--smoke] [--reps N] [--no-pin] [--bin-dir DIR] [--out DIR]
                 [--server-cpu N] [--driver-cpu N] [--only PATH]

  --only PATH   measure one path (openai-compatible, anthropic, gemini,
                anthropic-messages)
  --smoke       tiny phases (seconds): checks everything runs and streams complete
  --reps N      repetitions (default 3; 1 with --smoke)
  --no-pin      do not pin with taskset
  --bin-dir     where modelway, bench-upstream, floor-proxy and loadgen are
                (default: this binary's directory)
  --out         output directory (default target/bench)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_dialect_is_answered_by_the_mock_of_that_dialect() {
        for spec in PATHS.iter().filter(|p| p.client != ClientDialect::Openai) {
            assert_eq!(
                spec.dialect,
                Some(spec.client.as_str()),
                "{}: direct and floor call the mock's {} endpoint, which only \
                 `bench-upstream --dialect {}` answers",
                spec.name,
                spec.client.path(),
                spec.client.as_str()
            );
        }
    }

    #[test]
    fn only_must_name_a_path() {
        let parse = |a: &[&str]| parse_args(a.iter().map(|s| (*s).to_owned()));
        let opts = parse(&["--only", "anthropic-messages"]).unwrap();
        assert_eq!(opts.only.as_deref(), Some("anthropic-messages"));
        let err = parse(&["--only", "anthropic-message"]).unwrap_err();
        assert!(err.to_string().contains("no path is named"), "{err}");
    }
}
