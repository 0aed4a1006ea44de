//! `modelway`: serve the gateway (`modelway --config FILE`) or validate a config
//! (`modelway check --config FILE`). With no `--config` it serves the built-in
//! quickstart (the in-process mock provider; no keys, no network).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use modelway::app::App;
use modelway::reload::{self, load_file};
use modelway::telemetry::{init_logging, Telemetry};
use modelway::{builtin_registry, server};
use modelway_core::config::LogFormat;
use modelway_core::{Config, Gateway, Snapshot};

#[derive(Parser)]
#[command(
    name = "modelway",
    version,
    about = "An LLM gateway speaking the OpenAI Chat Completions API"
)]
struct Cli {
    /// The TOML config file (default: the built-in quickstart with the mock provider).
    #[arg(long, short, global = true, env = "MODELWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding `server.listen` (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<String>,
    /// Do not watch the config file (it is still reloaded on SIGHUP).
    #[arg(long)]
    no_watch: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config (exactly as a reload would) and print how models resolve.
    Check {
        /// Extra model names to show the resolution of.
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// Print usage totals by day, key, provider and model from the config's ledger.
    Usage {
        /// From (inclusive): unix seconds or a UTC date YYYY-MM-DD. Default: 31 days ago.
        #[arg(long)]
        from: Option<String>,
        /// To (exclusive): unix seconds or a UTC date. Default: now.
        #[arg(long)]
        to: Option<String>,
        /// JSON (as `GET /admin/usage`) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { models }) => {
            init_logging(LogFormat::Text);
            check(cli.config, &models)
        }
        Some(Command::Usage { from, to, json }) => {
            init_logging(LogFormat::Text);
            usage(cli.config, from.as_deref(), to.as_deref(), json)
        }
        None => run(cli.config, cli.listen, !cli.no_watch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Option<PathBuf>, listen: Option<String>, watch: bool) -> anyhow::Result<()> {
    // The config first: it says how to log.
    let (cfg, hash) = match &config {
        Some(path) => {
            let loaded = load_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
            let loaded = match loaded {
                Ok(l) => l,
                Err(e) => {
                    init_logging(LogFormat::Text);
                    return Err(e);
                }
            };
            (loaded.config, Some(loaded.hash))
        }
        None => (Config::quickstart(), None),
    };
    init_logging(cfg.telemetry().log_format);
    if config.is_none() {
        tracing::info!("no --config given: serving the built-in quickstart (mock provider)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let telemetry = Telemetry::start(cfg.telemetry())?;

        let listen = listen.unwrap_or_else(|| cfg.server().listen.clone());
        // No keys on a reachable address would make every provider key free for all.
        if let Some(e) = cfg.auth().open_relay(&listen) {
            anyhow::bail!("{e}");
        }
        let drain = cfg.server().shutdown_timeout;
        let mut gateway = Gateway::new(cfg, builtin_registry()).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}",
                config
                    .as_ref()
                    .map_or_else(|| "config".into(), |p| p.display().to_string())
            )
        })?;
        // Absolute but not canonical: a `..data` symlink swap must be seen through the link.
        let config_path = config.map(|p| std::path::absolute(&p).unwrap_or(p));
        for o in telemetry.observers() {
            gateway = gateway.with_observer(o);
        }
        let app = App::new(gateway, telemetry.clone(), config_path, hash);
        let ledger = start_ledger(&app)?;
        let _ = app.listen.set(listen.clone());
        reload::spawn_watcher(app.clone(), watch).context("watching the config file")?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        // One line on stdout, for scripts and tests that start us on port 0.
        println!("modelway listening on http://{addr}");
        server::serve(Arc::clone(&app), listener, server::shutdown_signal(), drain).await;
        // Spans and usage records still queued go out before the process ends.
        telemetry.flush(Duration::from_secs(5)).await;
        let _ = tokio::task::spawn_blocking(move || ledger.close(Duration::from_secs(5))).await;
        Ok(())
    })
}

/// Opens `[usage] ledger` and sends the usage records there (see `modelway::usage`).
fn start_ledger(app: &Arc<App>) -> anyhow::Result<Arc<modelway::ledger::Ledger>> {
    let target = app.gateway.snapshot().config.usage().ledger.clone();
    let ledger = modelway::usage::open_ledger(app, &target).map_err(|e| anyhow::anyhow!("{e}"))?;
    app.telemetry.set_ledger(ledger.clone());
    Ok(ledger)
}

/// `modelway usage`: the ledger's totals, read straight from its file.
fn usage(
    config: Option<PathBuf>,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    use modelway::ledger::{parse_bound, Ledger};
    let path = config.context("`modelway usage` needs --config FILE (its [usage] ledger)")?;
    let cfg = load_file(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .config;
    match &cfg.usage().ledger {
        modelway_core::config::LedgerConfig::Memory => anyhow::bail!(
            "{}: no [usage] ledger is configured, so usage lives only in the running gateway's memory: see GET /admin/usage",
            path.display()
        ),
        modelway_core::config::LedgerConfig::Sqlite(db) if !db.exists() => anyhow::bail!(
            "{}: the ledger {} does not exist yet",
            path.display(),
            db.display()
        ),
        _ => {}
    }
    let now_ms = modelway_core::civil::now_ms();
    let bound = |v: Option<&str>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(v) => parse_bound(v)
            .with_context(|| format!("--{name} must be unix seconds or YYYY-MM-DD, got `{v}`")),
    };
    let from = bound(from, now_ms - 31 * 86_400_000, "from")?;
    let to = bound(to, now_ms + 60_000, "to")?;
    let ledger = Ledger::open(&cfg.usage().ledger).map_err(|e| anyhow::anyhow!("{e}"))?;
    let totals = ledger
        .totals(from, to)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ledger.close(Duration::from_secs(1));
    if json {
        println!(
            "{}",
            serde_json::json!({ "from_ms": from, "to_ms": to, "totals": totals })
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<16} {:<14} {:<32} {:>8} {:>12} {:>12} {:>10} {:>10} {:>10} {:>14} {:>8}",
        "day",
        "key",
        "provider",
        "model",
        "requests",
        "input",
        "output",
        "cached",
        "cache_wr",
        "reasoning",
        "cost_usd",
        "unpriced"
    );
    let (mut cost, mut requests, mut unpriced) = (0.0, 0, 0);
    for t in &totals {
        println!(
            "{:<10} {:<16} {:<14} {:<32} {:>8} {:>12} {:>12} {:>10} {:>10} {:>10} {:>14.6} {:>8}",
            t.day,
            t.key.as_deref().unwrap_or("-"),
            t.provider,
            t.model,
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cached_input_tokens,
            t.cache_write_tokens,
            t.reasoning_tokens,
            t.cost_usd,
            t.unpriced_requests
        );
        cost += t.cost_usd;
        requests += t.requests;
        unpriced += t.unpriced_requests;
    }
    println!("total: {requests} requests, ${cost:.6} priced, {unpriced} unpriced");
    Ok(())
}

/// Sample names shown by `modelway check`.
const SAMPLES: &[&str] = &[
    "gpt-4o-mini",
    "claude-3-5-haiku-latest",
    "gemini-2.5-flash",
    "openai/gpt-4o",
    "anthropic/claude-sonnet-4",
    "meta-llama/llama-3.3-70b-instruct",
];

fn check(config: Option<PathBuf>, extra: &[String]) -> anyhow::Result<()> {
    let cfg = match &config {
        Some(path) => {
            let loaded = load_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            loaded.config
        }
        None => Config::quickstart(),
    };
    let name = config.as_ref().map_or_else(
        || "built-in quickstart".to_owned(),
        |p| p.display().to_string(),
    );
    if let Some(e) = cfg.auth().open_relay(&cfg.server().listen) {
        anyhow::bail!("{name}: {e}");
    }
    // The same path a reload takes: parse + validate, then build every provider.
    let snap = Snapshot::build(
        cfg,
        &builtin_registry(),
        &modelway_core::HttpClient::new(),
        &std::sync::Arc::default(),
        None,
    )
    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    println!("{name}: OK");
    println!("providers:");
    for p in snap.router.providers() {
        let c = &p.config;
        println!(
            "  {:<16} kind={:<18} base_url={} api_key={}",
            p.name,
            p.config.kind,
            c.base_url.as_deref().unwrap_or("(preset default)"),
            if c.api_key.is_some() { "***" } else { "(none)" }
        );
    }
    println!("routes:");
    for r in snap.router.routes() {
        println!(
            "  {:<16} strategy={} deadline={}{}{}",
            r.name,
            r.strategy.as_str(),
            r.policy
                .deadline
                .map_or_else(|| "none".to_owned(), |d| format!("{d:?}")),
            r.policy
                .stream_keepalive
                .map(|d| format!(" stream_keepalive={d:?}"))
                .unwrap_or_default(),
            r.hedge
                .map(|h| format!(" {}", h.describe()))
                .unwrap_or_default(),
        );
        for t in &r.targets {
            let weight = if r.strategy == modelway_core::engine::StrategyKind::Weighted {
                format!(" weight={}", t.weight)
            } else {
                String::new()
            };
            let params = t
                .params
                .as_ref()
                .map(|p| format!(" params={}", serde_json::Value::Object((**p).clone())))
                .unwrap_or_default();
            println!("    -> {t}{weight}{params}");
            println!("       {}", t.policy.describe());
        }
    }
    let auth = snap.config.auth();
    println!(
        "auth: {} key(s), admin {}{}",
        auth.keys.len(),
        if auth.admin_key.is_some() {
            "enabled"
        } else {
            "disabled"
        },
        if auth.allow_unauthenticated {
            ", allow_unauthenticated"
        } else {
            ""
        }
    );
    for k in &auth.keys {
        let l = k.limits;
        println!(
            "  {:<16} models={} rpm={} tpm={} max_concurrent={}",
            k.name,
            if k.models.is_empty() {
                "*".to_owned()
            } else {
                k.models.join(",")
            },
            l.rpm.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            l.tpm.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            l.max_concurrent
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        );
    }
    let lim = snap.config.limits();
    println!(
        "limits: store={} on_store_error={} timeout={:?}; server: max_in_flight={} max_in_flight_bytes={}",
        lim.store.redacted(),
        lim.on_store_error.as_str(),
        lim.timeout,
        snap.config.server().max_in_flight,
        snap.config.server().max_in_flight_bytes
    );
    let h = snap.config.routing().health;
    println!(
        "health: eject after {} consecutive failures for {:?}, doubling up to {:?}",
        h.failures, h.cooldown, h.max_cooldown
    );
    println!(
        "default_provider: {}",
        snap.config
            .routing()
            .default_provider
            .as_deref()
            .unwrap_or("(none: unknown models get 404)")
    );
    println!("resolution:");
    let routes: Vec<String> = snap.router.routes().map(|r| r.name.clone()).collect();
    for model in routes
        .iter()
        .map(String::as_str)
        .chain(SAMPLES.iter().copied())
        .chain(extra.iter().map(String::as_str))
    {
        match snap.router.resolve(model) {
            Some(plan) => {
                let targets: Vec<String> = plan.targets.iter().map(ToString::to_string).collect();
                println!("  {model:<36} -> {} (by {})", targets.join(", "), plan.via);
            }
            None => println!("  {model:<36} -> 404 model_not_found"),
        }
    }
    Ok(())
}
