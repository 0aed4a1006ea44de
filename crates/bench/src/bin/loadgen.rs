//! `loadgen --addr HOST:PORT [--model M] [--dialect openai|anthropic] <mode>`: the
//! benchmark's own HTTP/1.1 driver.
//!
//! `--dialect` is what the client speaks: OpenAI chat bodies to `/v1/chat/completions`
//! (the default), or Anthropic Messages bodies to `/v1/messages` with
//! `anthropic-version`, their streams read as Anthropic's events (content in
//! `content_block_delta`, the end at `message_stop`).
//!
//! Modes:
//! - `latency --concurrency C --requests N [--warmup W]`: closed loop, C keep-alive
//!   connections, N measured requests after W warm-up requests per connection;
//! - `rate --rps R --duration S [--warmup S]`: open loop. A pacing thread schedules
//!   request *i* at `start + i/R` whatever happened to earlier ones, on as many
//!   keep-alive connections as are needed; latency is measured from the scheduled time,
//!   so a stall shows up in every request it delayed (no coordinated omission);
//! - `max --concurrency C --duration S [--warmup S]`: closed loop as fast as it goes;
//!   reports requests/s completed in the window;
//! - `stream --requests N --concurrency C --chunks K`: streaming requests; per stream the
//!   time to the response head, to the first content chunk, the largest gap between
//!   content chunks, each chunk's transit from the upstream (its stamp) and whether all K
//!   content chunks arrived in order followed by the stream's end (`[DONE]`, or
//!   `message_stop`).
//!
//! Prints `@measure-start` / `@measure-end` around the measured window and then one
//! JSON [`LoadReport`] line on stdout. Every run is bounded by `--deadline-s`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use modelway_bench::load::{LoadReport, StreamReport, MARK_END, MARK_START};
use modelway_bench::sse::{self, Event};
use modelway_bench::stats::{round1, Summary};
use modelway_bench::wire::{self, ClientDialect};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "modelway's benchmark load generator")]
struct Cli {
    /// Where to send requests.
    #[arg(long)]
    addr: SocketAddr,
    /// The API the requests speak: their body, endpoint, headers and answers.
    #[arg(long, value_enum, default_value_t = ClientDialect::Openai)]
    dialect: ClientDialect,
    /// The endpoint (default: the dialect's, `/v1/chat/completions` or `/v1/messages`).
    #[arg(long)]
    path: Option<String>,
    /// The `model` of every request.
    #[arg(long, default_value = wire::UPSTREAM_MODEL)]
    model: String,
    /// Runtime worker threads (default: one per CPU this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Hard bound on the whole run.
    #[arg(long, default_value_t = 300.0)]
    deadline_s: f64,
    /// Bound on each request (a streaming one: the whole stream).
    #[arg(long, default_value_t = 10.0)]
    timeout_s: f64,
    /// Sent on every request as `Authorization: Bearer KEY` (`x-api-key: KEY` with
    /// `--dialect anthropic`).
    #[arg(long)]
    api_key: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug, Clone)]
enum Mode {
    Latency {
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long)]
        requests: u64,
        /// Warm-up requests per connection, not measured.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
    },
    Rate {
        #[arg(long)]
        rps: f64,
        /// Measured seconds.
        #[arg(long)]
        duration: f64,
        /// Seconds at the same rate before the window.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value_t = 2048)]
        max_conns: usize,
    },
    Max {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    Stream {
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Content chunks every stream must carry.
        #[arg(long, default_value_t = 100)]
        chunks: u32,
        /// Warm-up streams per connection, not measured.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    modelway_bench::watchdog("loadgen", Duration::from_secs_f64(cli.deadline_s));
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let dialect = cli.dialect;
    let auth = match cli.api_key.as_deref().map(|k| dialect.key_header(k)) {
        Some((name, value)) => Some((
            HeaderName::from_static(name),
            HeaderValue::from_str(&value)?,
        )),
        None => None,
    };
    let target = Arc::new(Target {
        addr: cli.addr,
        host: HeaderValue::from_str(&cli.addr.to_string())?,
        path: cli.path.as_deref().unwrap_or(dialect.path()).parse()?,
        dialect,
        unary: dialect.request(&cli.model, false),
        stream: dialect.request(&cli.model, true),
        headers: dialect
            .headers()
            .iter()
            .map(|&(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect(),
        timeout: Duration::from_secs_f64(cli.timeout_s),
        auth,
    });
    let report = rt.block_on(async move {
        match cli.mode {
            Mode::Latency {
                concurrency,
                requests,
                warmup,
            } => latency(target, concurrency.max(1), requests, warmup).await,
            Mode::Rate {
                rps,
                duration,
                warmup,
                max_conns,
            } => rate(target, rps, duration, warmup, max_conns).await,
            Mode::Max {
                concurrency,
                duration,
                warmup,
            } => max(target, concurrency.max(1), duration, warmup).await,
            Mode::Stream {
                requests,
                concurrency,
                chunks,
                warmup,
            } => stream(target, concurrency.max(1), requests, chunks, warmup).await,
        }
    });
    println!("{}", serde_json::to_string(&report)?);
    // Do not wait for connections the runtime still holds.
    rt.shutdown_background();
    Ok(())
}

fn mark(what: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{what}");
    let _ = out.flush();
}

struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
    dialect: ClientDialect,
    unary: Bytes,
    stream: Bytes,
    /// The dialect's own headers (`anthropic-version`).
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// The key's header and value.
    auth: Option<(HeaderName, HeaderValue)>,
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> Result<Conn, String> {
    let tcp = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

fn post(t: &Target, body: &Bytes) -> Result<Request<Full<Bytes>>, String> {
    let mut req = Request::post(t.path.clone())
        .header(HOST, t.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &t.headers {
        req = req.header(name, value.clone());
    }
    if let Some((name, value)) = &t.auth {
        req = req.header(name, value.clone());
    }
    req.body(Full::new(body.clone())).map_err(|e| e.to_string())
}

/// One non-streaming request on `conn`, bounded by the request timeout.
async fn unary(conn: &mut Conn, t: &Target) -> Result<(), String> {
    let work = async {
        conn.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = conn
            .send_request(post(t, &t.unary)?)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                sse::truncate(&String::from_utf8_lossy(&body), 160)
            ));
        }
        if !modelway_bench::contains(&body, t.dialect.answer_marker()) {
            return Err(format!(
                "not a {} answer: {}",
                t.dialect.as_str(),
                sse::truncate(&String::from_utf8_lossy(&body), 160)
            ));
        }
        Ok(())
    };
    match tokio::time::timeout(t.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", t.timeout)),
    }
}

/// Error count and a few distinct messages.
#[derive(Default)]
struct Errors {
    count: u64,
    samples: Vec<String>,
}

impl Errors {
    fn add(&mut self, msg: String) {
        self.count += 1;
        if self.samples.len() < 5 && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for s in other.samples {
            if self.samples.len() < 5 && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }
}

/// A closed-loop worker's connection, reopened after an error.
struct Worker {
    conn: Option<Conn>,
}

impl Worker {
    async fn unary(&mut self, t: &Target) -> Result<(), String> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(connect(t).await?),
        };
        let r = unary(conn, t).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

fn finish(
    mode: &str,
    requests: u64,
    samples: Vec<u64>,
    errors: Errors,
    window: Duration,
) -> LoadReport {
    let ok = samples.len() as u64;
    let window_s = window.as_secs_f64();
    LoadReport {
        mode: mode.to_owned(),
        requests,
        ok,
        errors: errors.count,
        error_samples: errors.samples,
        window_s: round3(window_s),
        achieved_rps: if window_s > 0.0 {
            round1(ok as f64 / window_s)
        } else {
            0.0
        },
        latency: Summary::from_nanos(samples),
        ..LoadReport::default()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn latency(t: Arc<Target>, concurrency: usize, requests: u64, warmup: u64) -> LoadReport {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency));
    let remaining = Arc::new(AtomicI64::new(i64::try_from(requests).unwrap_or(i64::MAX)));
    let started: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (t, barrier, remaining, started) = (
            t.clone(),
            barrier.clone(),
            remaining.clone(),
            started.clone(),
        );
        set.spawn(async move {
            let mut w = Worker { conn: None };
            let mut errors = Errors::default();
            let mut samples = Vec::new();
            for _ in 0..warmup {
                let _ = w.unary(&t).await;
            }
            if barrier.wait().await.is_leader() {
                let _ = started.set(Instant::now());
                mark(MARK_START);
            }
            while remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
                let t0 = Instant::now();
                match w.unary(&t).await {
                    Ok(()) => samples.push(nanos(t0.elapsed())),
                    Err(e) => errors.add(e),
                }
            }
            (samples, errors)
        });
    }
    let (samples, errors) = join_all(set).await;
    let window = started.get().map_or(Duration::ZERO, Instant::elapsed);
    mark(MARK_END);
    finish("latency", requests, samples, errors, window)
}

async fn join_all(mut set: JoinSet<(Vec<u64>, Errors)>) -> (Vec<u64>, Errors) {
    let mut all = Vec::new();
    let mut errors = Errors::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((s, e)) => {
                all.extend(s);
                errors.merge(e);
            }
            Err(e) => errors.add(format!("worker failed: {e}")),
        }
    }
    (all, errors)
}

async fn max(t: Arc<Target>, concurrency: usize, duration: f64, warmup: f64) -> LoadReport {
    let start = Instant::now();
    let measure_start = start + Duration::from_secs_f64(warmup);
    let end = measure_start + Duration::from_secs_f64(duration);
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let t = t.clone();
        set.spawn(async move {
            let mut w = Worker { conn: None };
            let mut errors = Errors::default();
            let mut samples = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = w.unary(&t).await;
                let t1 = Instant::now();
                if t1 < measure_start || t1 > end {
                    continue;
                }
                match r {
                    Ok(()) => samples.push(nanos(t1 - t0)),
                    Err(e) => errors.add(e),
                }
            }
            (samples, errors)
        });
    }
    let marks = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        mark(MARK_START);
        tokio::time::sleep_until(end.into()).await;
        mark(MARK_END);
    });
    let (samples, errors) = join_all(set).await;
    let _ = marks.await;
    let requests = samples.len() as u64 + errors.count;
    let mut r = finish("max", requests, samples, errors, end - measure_start);
    r.connections = concurrency as u64;
    r
}

/// Keep-alive connections for the open loop: an idle one if there is one, else a new
/// one up to `max`, else wait for one to come back.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    open: AtomicUsize,
    peak: AtomicUsize,
    max: usize,
    returned: Notify,
}

impl Pool {
    async fn get(&self, t: &Target) -> Result<Conn, String> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            if let Some(c) = idle {
                if !c.is_closed() {
                    return Ok(c);
                }
                self.open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
            if open <= self.max {
                self.peak.fetch_max(open, Ordering::Relaxed);
                return match connect(t).await {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.returned.notified().await;
        }
    }

    fn put(&self, c: Conn) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(c);
        }
        self.returned.notify_one();
    }

    fn discard(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.returned.notify_one();
    }
}

struct RateSample {
    measured: bool,
    latency: u64,
    lag: u64,
    result: Result<(), String>,
}

async fn rate(
    t: Arc<Target>,
    rps: f64,
    duration: f64,
    warmup: f64,
    max_conns: usize,
) -> LoadReport {
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        open: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        max: max_conns.max(1),
        returned: Notify::new(),
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RateSample>();
    let handle = tokio::runtime::Handle::current();
    let period_ns = (1e9 / rps.max(0.001)) as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let measure_start = start + Duration::from_secs_f64(warmup);
    let end = measure_start + Duration::from_secs_f64(duration);
    let scheduled = Arc::new(AtomicU64::new(0));
    let pacer = {
        let (pool, t, scheduled) = (pool.clone(), t.clone(), scheduled.clone());
        std::thread::spawn(move || {
            let mut marked = false;
            for i in 0u64.. {
                let at = start + Duration::from_nanos(period_ns.saturating_mul(i));
                if at >= end {
                    break;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let measured = at >= measure_start;
                if measured && !marked {
                    mark(MARK_START);
                    marked = true;
                }
                if measured {
                    scheduled.fetch_add(1, Ordering::Relaxed);
                }
                let (pool, t, tx) = (pool.clone(), t.clone(), tx.clone());
                handle.spawn(async move {
                    let lag = nanos(Instant::now().saturating_duration_since(at));
                    let result = match pool.get(&t).await {
                        Ok(mut conn) => {
                            let r = unary(&mut conn, &t).await;
                            if r.is_ok() {
                                pool.put(conn);
                            } else {
                                pool.discard();
                            }
                            r
                        }
                        Err(e) => Err(e),
                    };
                    let latency = nanos(at.elapsed());
                    let _ = tx.send(RateSample {
                        measured,
                        latency,
                        lag,
                        result,
                    });
                });
            }
            let now = Instant::now();
            if end > now {
                std::thread::sleep(end - now);
            }
            mark(MARK_END);
        })
    };
    let mut samples = Vec::new();
    let mut lags = Vec::new();
    let mut errors = Errors::default();
    while let Some(s) = rx.recv().await {
        if !s.measured {
            continue;
        }
        lags.push(s.lag);
        match s.result {
            Ok(()) => samples.push(s.latency),
            Err(e) => errors.add(e),
        }
    }
    if pacer.join().is_err() {
        errors.add("the pacing thread panicked".into());
    }
    let requests = scheduled.load(Ordering::Relaxed);
    let mut r = finish("rate", requests, samples, errors, end - measure_start);
    r.target_rps = Some(rps);
    r.send_lag = Summary::from_nanos(lags);
    r.connections = pool.peak.load(Ordering::Relaxed) as u64;
    r
}

#[derive(Default)]
struct StreamSample {
    ttfb: u64,
    ttfc: Option<u64>,
    max_gap: Option<u64>,
    transits: Vec<u64>,
}

/// One streaming request; `Err` when it failed or arrived incomplete.
async fn one_stream(
    conn: &mut Conn,
    t: &Target,
    expect: u32,
) -> Result<StreamSample, (String, StreamSample)> {
    let mut s = StreamSample::default();
    let t0 = Instant::now();
    let fail = |msg: String, s: StreamSample| Err((msg, s));
    if let Err(e) = conn.ready().await {
        return fail(format!("connection: {e}"), s);
    }
    let req = match post(t, &t.stream) {
        Ok(r) => r,
        Err(e) => return fail(e, s),
    };
    let resp = match conn.send_request(req).await {
        Ok(r) => r,
        Err(e) => return fail(format!("send: {e}"), s),
    };
    s.ttfb = nanos(t0.elapsed());
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return fail(
            format!(
                "HTTP {status}: {}",
                sse::truncate(&String::from_utf8_lossy(&text), 160)
            ),
            s,
        );
    }
    let mut splitter = sse::Splitter::default();
    let mut next_index = 0u32;
    let mut last_content: Option<Instant> = None;
    let mut done = false;
    let mut problem: Option<String> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                problem.get_or_insert(format!("body: {e}"));
                break;
            }
        };
        let now = Instant::now();
        let wall = wire::unix_nanos();
        let Some(data) = frame.data_ref() else {
            continue;
        };
        splitter.push(data);
        while let Some(ev) = splitter.next_data() {
            match sse::classify(t.dialect, &ev) {
                Event::Done => done = true,
                Event::Content(stamp) => {
                    if done {
                        problem.get_or_insert(format!("content after {}", t.dialect.stream_end()));
                    }
                    match stamp {
                        Some((i, ns)) => {
                            if i != next_index {
                                problem.get_or_insert(format!(
                                    "chunk {i} arrived where {next_index} was due"
                                ));
                            }
                            s.transits.push(wall.saturating_sub(ns));
                        }
                        None => {
                            problem.get_or_insert("content chunk without a stamp".into());
                        }
                    }
                    next_index += 1;
                    if s.ttfc.is_none() {
                        s.ttfc = Some(nanos(now - t0));
                    }
                    if let Some(prev) = last_content {
                        let gap = nanos(now - prev);
                        s.max_gap = Some(s.max_gap.map_or(gap, |g| g.max(gap)));
                    }
                    last_content = Some(now);
                }
                Event::Error(e) => {
                    problem.get_or_insert(format!("error event: {e}"));
                }
                Event::Malformed(e) => {
                    problem.get_or_insert(format!("malformed event: {e}"));
                }
                Event::Finish | Event::Other => {}
            }
        }
    }
    if let Some(p) = problem {
        return fail(p, s);
    }
    if !done || next_index != expect {
        return fail(
            format!(
                "incomplete stream: {next_index}/{expect} content chunks, {} {}",
                t.dialect.stream_end(),
                if done { "seen" } else { "missing" }
            ),
            s,
        );
    }
    Ok(s)
}

async fn stream(
    t: Arc<Target>,
    concurrency: usize,
    requests: u64,
    expect: u32,
    warmup: u64,
) -> LoadReport {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency));
    let remaining = Arc::new(AtomicI64::new(i64::try_from(requests).unwrap_or(i64::MAX)));
    let started: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (t, barrier, remaining, started) = (
            t.clone(),
            barrier.clone(),
            remaining.clone(),
            started.clone(),
        );
        set.spawn(async move {
            let mut conn: Option<Conn> = None;
            let mut out: Vec<Result<StreamSample, (String, StreamSample)>> = Vec::new();
            let mut left = warmup;
            let mut measuring = false;
            loop {
                if left == 0 && !measuring {
                    measuring = true;
                    if barrier.wait().await.is_leader() {
                        let _ = started.set(Instant::now());
                        mark(MARK_START);
                    }
                }
                if measuring && remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
                    break;
                }
                let r = async {
                    let c = match &mut conn {
                        Some(c) => c,
                        None => match connect(&t).await {
                            Ok(c) => conn.insert(c),
                            Err(e) => return Err((e, StreamSample::default())),
                        },
                    };
                    match tokio::time::timeout(t.timeout, one_stream(c, &t, expect)).await {
                        Ok(r) => r,
                        Err(_) => Err((
                            format!("stream not finished within {:?}", t.timeout),
                            StreamSample::default(),
                        )),
                    }
                }
                .await;
                if r.is_err() {
                    conn = None;
                }
                if measuring {
                    out.push(r);
                } else {
                    left -= 1;
                }
            }
            out
        });
    }
    let mut results = Vec::new();
    let mut errors = Errors::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(v) => results.extend(v),
            Err(e) => errors.add(format!("worker failed: {e}")),
        }
    }
    let window = started.get().map_or(Duration::ZERO, Instant::elapsed);
    mark(MARK_END);

    let (mut ttfb, mut ttfc, mut gaps, mut transits, mut max_transits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut complete = 0u64;
    let mut incomplete = 0u64;
    for r in results {
        let s = match r {
            Ok(s) => {
                complete += 1;
                s
            }
            Err((e, s)) => {
                incomplete += 1;
                errors.add(e);
                s
            }
        };
        if s.ttfb > 0 {
            ttfb.push(s.ttfb);
        }
        ttfc.extend(s.ttfc);
        gaps.extend(s.max_gap);
        max_transits.extend(s.transits.iter().copied().max());
        transits.extend(s.transits);
    }
    let window_s = window.as_secs_f64();
    LoadReport {
        mode: "stream".into(),
        requests,
        ok: complete,
        errors: errors.count,
        error_samples: errors.samples,
        window_s: round3(window_s),
        achieved_rps: if window_s > 0.0 {
            round1(complete as f64 / window_s)
        } else {
            0.0
        },
        connections: concurrency as u64,
        stream: Some(StreamReport {
            expected_chunks: expect,
            complete,
            incomplete,
            ttfb: Summary::from_nanos(ttfb),
            ttfc: Summary::from_nanos(ttfc),
            max_gap: Summary::from_nanos(gaps),
            transit: Summary::from_nanos(transits),
            max_transit: Summary::from_nanos(max_transits),
        }),
        ..LoadReport::default()
    }
}
