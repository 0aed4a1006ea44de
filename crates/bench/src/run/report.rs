//! The report: the table (stdout, and Markdown for BENCHMARKS.md), the budgets judged
//! against the measured figures, and the JSON with every repetition's raw reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Ctx, PathResult, PathSpec, Profile, Rep, TARGETS};
use crate::procfs::Machine;
use crate::stats::Spread;

#[derive(Debug, Clone, Copy)]
enum Unit {
    Us,
    Rps,
    Pct,
    Mib,
    Count,
}

/// What the last column shows: modelway against the floor proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Delta,
    Ratio,
    Nothing,
}

struct Row {
    metric: String,
    label: String,
    unit: Unit,
    cmp: Cmp,
}

struct Section {
    title: String,
    rows: Vec<Row>,
}

fn row(metric: impl Into<String>, label: impl Into<String>, unit: Unit, cmp: Cmp) -> Row {
    Row {
        metric: metric.into(),
        label: label.into(),
        unit,
        cmp,
    }
}

fn latency_rows(key: &str, rate: bool) -> Vec<Row> {
    let mut rows = vec![
        row(format!("{key}.p50"), "p50", Unit::Us, Cmp::Delta),
        row(format!("{key}.p99"), "p99", Unit::Us, Cmp::Delta),
        row(
            format!("{key}.added_p50"),
            "added vs direct, p50",
            Unit::Us,
            Cmp::Delta,
        ),
        row(
            format!("{key}.added_p99"),
            "added vs direct, p99",
            Unit::Us,
            Cmp::Delta,
        ),
    ];
    if rate {
        rows.push(row(
            format!("{key}.send_lag_p99"),
            "driver send lag p99 (noise)",
            Unit::Us,
            Cmp::Nothing,
        ));
    }
    rows
}

fn sections(p: &Profile) -> Vec<Section> {
    let mut out = vec![
        Section {
            title: "latency, c=1, mock 0 ms (µs)".into(),
            rows: latency_rows("c1_0ms", false),
        },
        Section {
            title: format!("latency, c=1, mock {} ms (µs)", p.slow_ms),
            rows: latency_rows(&format!("c1_{}ms", p.slow_ms), false),
        },
    ];
    for ms in [0, p.slow_ms] {
        for rate in &p.rates {
            out.push(Section {
                title: format!("open loop {rate} req/s, mock {ms} ms (µs from scheduled send)"),
                rows: latency_rows(&format!("r{rate}_{ms}ms"), true),
            });
        }
    }
    let mut cpu = Vec::new();
    for ms in [0, p.slow_ms] {
        for rate in &p.rates {
            cpu.push(row(
                format!("cpu.r{rate}_{ms}ms"),
                format!("at {rate} req/s, mock {ms} ms"),
                Unit::Us,
                Cmp::Ratio,
            ));
        }
    }
    let top_rate = p.rates.iter().copied().fold(0.0, f64::max);
    cpu.push(row(
        format!("cpu_ns.r{top_rate}_0ms"),
        format!("at {top_rate} req/s, mock 0 ms (schedstat, ns resolution)"),
        Unit::Us,
        Cmp::Ratio,
    ));
    cpu.push(row(
        format!("cpu.traced_r{top_rate}_0ms"),
        format!(
            "at {top_rate} req/s, mock 0 ms, tracing on (100% sampled, OTLP to a local receiver)"
        ),
        Unit::Us,
        Cmp::Ratio,
    ));
    cpu.push(row(
        format!("cpu.keyed_r{top_rate}_0ms"),
        format!("at {top_rate} req/s, mock 0 ms, one gateway key with an rpm limit (memory store)"),
        Unit::Us,
        Cmp::Ratio,
    ));
    cpu.push(row(
        format!("cpu.ledger_r{top_rate}_0ms"),
        format!("at {top_rate} req/s, mock 0 ms, usage ledger on (SQLite, every request priced)"),
        Unit::Us,
        Cmp::Ratio,
    ));
    cpu.push(row(
        "cpu.max",
        "at saturation (max throughput phase)",
        Unit::Us,
        Cmp::Ratio,
    ));
    out.push(Section {
        title: "CPU time of the proxy process per request (µs, /proc/PID/stat)".into(),
        rows: cpu,
    });
    out.push(Section {
        title: format!(
            "max throughput, closed loop, {} connections, mock 0 ms",
            p.max_concurrency
        ),
        rows: vec![
            row("max.rps", "req/s", Unit::Rps, Cmp::Ratio),
            row(
                "max.cpu_util_pct",
                "proxy CPU use (% of one core)",
                Unit::Pct,
                Cmp::Nothing,
            ),
            row("max.p50", "latency p50 (µs)", Unit::Us, Cmp::Delta),
        ],
    });
    out.push(Section {
        title: format!(
            "streaming: {} content chunks every {} ms, {} concurrent (µs)",
            p.stream_chunks, p.stream_interval_ms, p.stream_concurrency
        ),
        rows: vec![
            row(
                "stream.ttfb_p50",
                "time to first byte (head), p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.ttfb_p99",
                "time to first byte (head), p99",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.ttfc_p50",
                "time to first content chunk, p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.ttfc_p99",
                "time to first content chunk, p99",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.gap_p50",
                "largest gap between chunks, p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.gap_max",
                "largest gap between chunks, max",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.transit_p50",
                "chunk transit upstream→client, p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.transit_p99",
                "chunk transit upstream→client, p99",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.transit_max",
                "chunk transit upstream→client, max",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "stream.complete_pct",
                "streams complete (%)",
                Unit::Pct,
                Cmp::Nothing,
            ),
        ],
    });
    out.push(Section {
        title: "memory of the proxy process (MiB)".into(),
        rows: vec![
            row(
                "rss.idle_mib",
                "idle RSS (VmRSS, start + idle wait)",
                Unit::Mib,
                Cmp::Ratio,
            ),
            row(
                "rss.peak_mib",
                "peak RSS (VmHWM, after all phases)",
                Unit::Mib,
                Cmp::Ratio,
            ),
        ],
    });
    out.push(Section {
        title: format!(
            "tracing on, {top_rate} req/s, mock 0 ms (µs from scheduled send; spans per phase)"
        ),
        rows: vec![
            row(
                format!("traced_r{top_rate}_0ms.p50"),
                "latency p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                format!("traced_r{top_rate}_0ms.p99"),
                "latency p99",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                "traced.spans_exported",
                "spans exported",
                Unit::Count,
                Cmp::Nothing,
            ),
            row(
                "traced.spans_dropped",
                "spans dropped",
                Unit::Count,
                Cmp::Nothing,
            ),
        ],
    });
    out.push(Section {
        title: format!(
            "one gateway key with an rpm limit (memory store), {top_rate} req/s, mock 0 ms (µs from scheduled send)"
        ),
        rows: vec![
            row(
                format!("keyed_r{top_rate}_0ms.p50"),
                "latency p50",
                Unit::Us,
                Cmp::Delta,
            ),
            row(
                format!("keyed_r{top_rate}_0ms.p99"),
                "latency p99",
                Unit::Us,
                Cmp::Delta,
            ),
        ],
    });
    out.push(Section {
        title: "failures".into(),
        rows: vec![row(
            "errors",
            "failed requests, all phases",
            Unit::Count,
            Cmp::Nothing,
        )],
    });
    out
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Us | Unit::Pct => {
            if v.abs() >= 1000.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        Unit::Rps | Unit::Count => format!("{v:.0}"),
        Unit::Mib => format!("{v:.1}"),
    }
}

fn fmt_delta(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:+.0}")
    } else {
        format!("{v:+.1}")
    }
}

fn fmt_ratio(v: f64) -> String {
    format!("{v:.2}×")
}

fn fmt_spread(s: &Spread, f: impl Fn(f64) -> String) -> String {
    if s.values.len() <= 1 {
        f(s.median)
    } else {
        format!("{} [{}…{}]", f(s.median), f(s.min), f(s.max))
    }
}

fn values(reps: &[Rep], metric: &str, target: &str) -> Vec<f64> {
    reps.iter().filter_map(|r| r.get(metric, target)).collect()
}

fn compared(reps: &[Rep], metric: &str, cmp: Cmp) -> Vec<f64> {
    reps.iter()
        .filter_map(|r| {
            let (m, f) = (r.get(metric, "modelway")?, r.get(metric, "floor")?);
            match cmp {
                Cmp::Delta => Some(m - f),
                Cmp::Ratio if f > 0.0 => Some(m / f),
                _ => None,
            }
        })
        .collect()
}

/// A plain table rendered as aligned text or Markdown.
struct Table {
    header: Vec<String>,
    lines: Vec<Line>,
    /// Left-align every column (text tables); else only the first.
    left: bool,
}

enum Line {
    Section(String),
    Cells(Vec<String>),
}

impl Table {
    fn text(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for l in &self.lines {
            if let Line::Cells(c) = l {
                for (i, cell) in c.iter().enumerate().take(n) {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let pad = |s: &str, w: usize, left: bool| {
            let fill = " ".repeat(w.saturating_sub(s.chars().count()));
            if left {
                format!("{s}{fill}")
            } else {
                format!("{fill}{s}")
            }
        };
        let render = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| pad(c, widths[i], i == 0 || self.left))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = render(&self.header);
        out.push('\n');
        for l in &self.lines {
            match l {
                Line::Section(t) => {
                    let _ = writeln!(out, "{t}");
                }
                Line::Cells(c) => {
                    let _ = writeln!(out, "{}", render(c));
                }
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let n = self.header.len();
        let mut out = format!("| {} |\n", self.header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            (0..n)
                .map(|i| if i == 0 || self.left { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for l in &self.lines {
            match l {
                Line::Section(t) => {
                    let _ = writeln!(out, "| **{}** |{}", t.trim(), " |".repeat(n - 1));
                }
                Line::Cells(c) => {
                    let _ = writeln!(out, "| {} |", c.join(" | ").trim());
                }
            }
        }
        out
    }
}

fn results_table(p: &Profile, reps: &[Rep]) -> Table {
    let mut header = vec!["metric".to_owned()];
    header.extend(TARGETS.iter().map(|t| (*t).to_owned()));
    header.push("modelway vs floor".into());
    let mut lines = Vec::new();
    for section in sections(p) {
        lines.push(Line::Section(section.title));
        for r in section.rows {
            let mut cells = vec![format!("  {}", r.label)];
            let mut any = false;
            for t in TARGETS {
                let cell = Spread::of(&values(reps, &r.metric, t)).map_or_else(
                    || "—".to_owned(),
                    |s| fmt_spread(&s, |v| fmt_value(v, r.unit)),
                );
                any |= cell != "—";
                cells.push(cell);
            }
            let cmp = Spread::of(&compared(reps, &r.metric, r.cmp)).map_or_else(
                || "".to_owned(),
                |s| match r.cmp {
                    Cmp::Delta => fmt_spread(&s, fmt_delta),
                    Cmp::Ratio => fmt_spread(&s, fmt_ratio),
                    Cmp::Nothing => String::new(),
                },
            );
            cells.push(cmp);
            if any {
                lines.push(Line::Cells(cells));
            }
        }
    }
    Table {
        header,
        lines,
        left: false,
    }
}

/// One budget, judged on the median over repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetResult {
    pub budget: String,
    pub limit: String,
    /// Per-repetition figures.
    pub figure: Option<Spread>,
    pub measured: String,
    /// `None`: could not be measured.
    pub met: Option<bool>,
    /// How many repetitions met it on their own.
    pub met_in_reps: String,
    pub note: Option<String>,
}

/// A budget's figure from one repetition.
type FigureFn = Box<dyn Fn(&Rep) -> Option<f64>>;

struct BudgetDef {
    budget: String,
    limit_text: String,
    limit: f64,
    /// `true`: the figure must be at most `limit`; `false`: at least.
    at_most: bool,
    fmt: fn(f64) -> String,
    figure: FigureFn,
}

fn budget_defs(p: &Profile, spec: &PathSpec) -> Vec<BudgetDef> {
    let cpu_budget = spec.cpu_budget;
    let top_rate = p.rates.iter().copied().fold(0.0, f64::max);
    let cpu_key = format!("cpu.r{top_rate}_0ms");
    let ratio = |metric: String| -> FigureFn {
        Box::new(move |r: &Rep| {
            let f = r.get(&metric, "floor")?;
            (f > 0.0).then_some(r.get(&metric, "modelway")? / f)
        })
    };
    let delta = |metric: &'static str| -> FigureFn {
        Box::new(move |r: &Rep| Some(r.get(metric, "modelway")? - r.get(metric, "floor")?))
    };
    let own =
        |metric: &'static str| -> FigureFn { Box::new(move |r: &Rep| r.get(metric, "modelway")) };
    let us = |v: f64| format!("{v:+.1} µs");
    let mut traced = Vec::new();
    if let Some(limit) = spec.traced_cpu_budget {
        traced.push(BudgetDef {
            budget: format!(
                "CPU per request with tracing on (100% sampled, exporting) vs floor proxy ({top_rate} req/s, mock 0 ms)"
            ),
            limit_text: format!("≤ {limit}×"),
            limit,
            at_most: true,
            fmt: fmt_ratio,
            figure: ratio(format!("cpu.traced_r{top_rate}_0ms")),
        });
    }
    if let Some(limit) = spec.keyed_cpu_budget {
        traced.push(BudgetDef {
            budget: format!(
                "CPU per request with one key and an rpm limit (memory store) vs floor proxy ({top_rate} req/s, mock 0 ms)"
            ),
            limit_text: format!("≤ {limit}×"),
            limit,
            at_most: true,
            fmt: fmt_ratio,
            figure: ratio(format!("cpu.keyed_r{top_rate}_0ms")),
        });
    }
    if let Some(limit) = spec.ledger_cpu_budget {
        traced.push(BudgetDef {
            budget: format!(
                "CPU per request with the SQLite usage ledger on vs floor proxy ({top_rate} req/s, mock 0 ms)"
            ),
            limit_text: format!("≤ {limit}×"),
            limit,
            at_most: true,
            fmt: fmt_ratio,
            figure: ratio(format!("cpu.ledger_r{top_rate}_0ms")),
        });
    }
    let mut defs = vec![
        BudgetDef {
            budget: format!("CPU per request vs floor proxy ({top_rate} req/s, mock 0 ms)"),
            limit_text: format!("≤ {cpu_budget}×"),
            limit: cpu_budget,
            at_most: true,
            fmt: fmt_ratio,
            figure: ratio(cpu_key),
        },
        BudgetDef {
            budget: "max req/s on one core vs floor proxy".into(),
            limit_text: "≥ 0.9×".into(),
            limit: 0.9,
            at_most: false,
            fmt: fmt_ratio,
            figure: ratio("max.rps".into()),
        },
        BudgetDef {
            budget: "added latency at c=1, p50, minus floor's (mock 0 ms)".into(),
            limit_text: "≤ +20 µs".into(),
            limit: 20.0,
            at_most: true,
            fmt: us,
            figure: delta("c1_0ms.p50"),
        },
        BudgetDef {
            budget: "added latency at c=1, p99, minus floor's (mock 0 ms)".into(),
            limit_text: "≤ +50 µs".into(),
            limit: 50.0,
            at_most: true,
            fmt: us,
            figure: delta("c1_0ms.p99"),
        },
        BudgetDef {
            budget: "streaming time to first content chunk (p50) minus floor's".into(),
            limit_text: "≤ +100 µs".into(),
            limit: 100.0,
            at_most: true,
            fmt: us,
            figure: delta("stream.ttfc_p50"),
        },
        BudgetDef {
            budget: "added inter-chunk gap: largest gap per stream (p50) minus floor's".into(),
            limit_text: "≤ +100 µs (none, within noise)".into(),
            limit: 100.0,
            at_most: true,
            fmt: us,
            figure: delta("stream.gap_p50"),
        },
        BudgetDef {
            budget: "streams complete".into(),
            limit_text: "100%".into(),
            limit: 100.0,
            at_most: false,
            fmt: |v| format!("{v:.1}%"),
            figure: own("stream.complete_pct"),
        },
        BudgetDef {
            budget: "idle RSS".into(),
            limit_text: "≤ 8 MiB".into(),
            limit: 8.0,
            at_most: true,
            fmt: |v| format!("{v:.1} MiB"),
            figure: own("rss.idle_mib"),
        },
        BudgetDef {
            budget: "peak RSS under load".into(),
            limit_text: "≤ 32 MiB".into(),
            limit: 32.0,
            at_most: true,
            fmt: |v| format!("{v:.1} MiB"),
            figure: own("rss.peak_mib"),
        },
    ];
    defs.splice(1..1, traced);
    defs
}

fn judge(p: &Profile, path: &PathResult) -> Vec<BudgetResult> {
    let measured = !path.reps.is_empty();
    budget_defs(p, &path.spec)
        .into_iter()
        .map(|d| {
            if !measured {
                return BudgetResult {
                    budget: d.budget,
                    limit: d.limit_text,
                    figure: None,
                    measured: path.status.clone(),
                    met: None,
                    met_in_reps: String::new(),
                    note: None,
                };
            }
            let vals: Vec<f64> = path.reps.iter().filter_map(|r| (d.figure)(r)).collect();
            let ok = |v: f64| {
                if d.at_most {
                    v <= d.limit
                } else {
                    v >= d.limit
                }
            };
            let spread = Spread::of(&vals);
            let met = spread.as_ref().map(|s| ok(s.median));
            let met_in = vals.iter().filter(|&&v| ok(v)).count();
            let shown = spread
                .as_ref()
                .map_or_else(|| "not measured".to_owned(), |s| fmt_spread(s, d.fmt));
            let mut note = None;
            if d.budget.starts_with("max req/s") {
                note = saturation_note(&path.reps);
            }
            BudgetResult {
                budget: d.budget,
                limit: d.limit_text,
                figure: spread,
                measured: shown,
                met,
                met_in_reps: format!("{met_in}/{}", vals.len()),
                note,
            }
        })
        .collect()
}

/// Whether the max-throughput figures are CPU-bound in the proxy at all.
fn saturation_note(reps: &[Rep]) -> Option<String> {
    let util = |t: &str| Spread::of(&values(reps, "max.cpu_util_pct", t)).map(|s| s.median);
    let (f, m) = (util("floor")?, util("modelway")?);
    let mut notes = Vec::new();
    for (name, u) in [("floor proxy", f), ("modelway", m)] {
        if u < 90.0 {
            notes.push(format!(
                "{name} used only {u:.0}% of its core: the driver core, not {name}, set its max"
            ));
        }
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

fn budgets_table(all: &[(String, String, Vec<BudgetResult>)]) -> (Table, Vec<String>) {
    let header = ["budget", "limit", "measured", "met", "reps met"]
        .map(str::to_owned)
        .to_vec();
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for (path, status, results) in all {
        if results.iter().all(|b| b.met.is_none()) {
            lines.push(Line::Section(format!("{path} path: every budget {status}")));
            continue;
        }
        lines.push(Line::Section(format!("{path} path")));
        for b in results {
            let met = match b.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "n/a",
            };
            let mut measured = b.measured.clone();
            if let Some(n) = &b.note {
                notes.push(format!("[{}] {path}, {}: {n}", notes.len() + 1, b.budget));
                let _ = write!(measured, " [{}]", notes.len());
            }
            lines.push(Line::Cells(vec![
                format!("  {}", b.budget),
                b.limit.clone(),
                measured,
                met.to_owned(),
                b.met_in_reps.clone(),
            ]));
        }
    }
    (
        Table {
            header,
            lines,
            left: true,
        },
        notes,
    )
}

fn summary(reps: &[Rep]) -> BTreeMap<String, BTreeMap<String, Spread>> {
    let mut out: BTreeMap<String, BTreeMap<String, Spread>> = BTreeMap::new();
    for rep in reps {
        for (metric, by_target) in &rep.figures {
            for target in by_target.keys() {
                let entry = out.entry(metric.clone()).or_default();
                if !entry.contains_key(target) {
                    if let Some(s) = Spread::of(&values(reps, metric, target)) {
                        entry.insert(target.clone(), s);
                    }
                }
            }
        }
    }
    out
}

/// Prints the tables and writes the JSON (and the Markdown tables) under `out_dir`.
pub(super) fn write(
    ctx: &Ctx,
    machine: &Machine,
    results: &[PathResult],
    elapsed: Duration,
) -> Result<()> {
    let p = &ctx.profile;
    let now = crate::wire::unix_nanos() / 1_000_000_000;
    let stamp = utc(now);
    let place = &ctx.place;
    let pinning = if place.pinned {
        format!(
            "gateway/floor pinned to CPU {}, loadgen + mock upstream to CPU {} (taskset)",
            place.server_cpu, place.driver_cpu
        )
    } else {
        format!(
            "not pinned ({})",
            place.note.as_deref().unwrap_or("no reason recorded")
        )
    };
    let mut head = String::new();
    let _ = writeln!(
        head,
        "modelway bench{} — {stamp} — {} CPUs ({}), {} GiB, Linux {}",
        if ctx.opts.smoke {
            " (SMOKE: sizes too small to mean anything)"
        } else {
            ""
        },
        machine.cpus,
        machine.cpu_model,
        machine.memory_gib,
        machine.kernel
    );
    let _ = writeln!(head, "{pinning}");
    let _ = writeln!(
        head,
        "load average before the run: {} (other work on the machine adds noise)",
        ctx.load_before
    );
    let aborted: Vec<&String> = results.iter().flat_map(|p| &p.aborted).collect();
    if !aborted.is_empty() {
        let _ = writeln!(
            head,
            "{} repetition attempt(s) aborted and retried: {}",
            aborted.len(),
            aborted
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(
        head,
        "{} repetition(s); cells are median [min…max] over repetitions; measured in {:.0} s",
        ctx.opts.reps,
        elapsed.as_secs_f64()
    );

    let mut text = head.clone();
    let mut md = String::new();
    let _ = writeln!(md, "{}", head.trim_end().replace('\n', "  \n"));
    let mut budgets = Vec::new();
    let mut paths_json = Vec::new();
    for path in results {
        let b = judge(p, path);
        if path.reps.is_empty() {
            let _ = writeln!(text, "\n== {} path: {}", path.spec.name, path.status);
            let _ = writeln!(md, "\n**{} path**: {}", path.spec.name, path.status);
        } else {
            let t = results_table(p, &path.reps);
            let _ = writeln!(text, "\n== {} path\n{}", path.spec.name, t.text());
            let _ = writeln!(md, "\n### {} path\n\n{}", path.spec.name, t.markdown());
        }
        paths_json.push(serde_json::json!({
            "name": path.spec.name,
            "spec": path.spec,
            "status": path.status,
            "aborted_attempts": path.aborted,
            "summary": summary(&path.reps),
            "budgets": b,
            "reps": path.reps,
        }));
        budgets.push((path.spec.name.to_owned(), path.status.clone(), b));
    }
    let (bt, notes) = budgets_table(&budgets);
    let _ = writeln!(
        text,
        "\n== budgets (judged on the median; measured = median [min…max])\n{}",
        bt.text()
    );
    let _ = writeln!(md, "\n### budgets\n\n{}", bt.markdown());
    for n in &notes {
        let _ = writeln!(text, "{n}");
        let _ = writeln!(md, "{n}  ");
    }
    print!("{text}");

    let doc = serde_json::json!({
        "schema": 1,
        "kind": if ctx.opts.smoke { "smoke" } else { "full" },
        "generated_utc": stamp,
        "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "machine": machine,
        "placement": place,
        "profile": p,
        "reps": ctx.opts.reps,
        "load_average_before": ctx.load_before,
        "targets": {
            "direct": "loadgen → bench-upstream",
            "floor": "loadgen → floor-proxy (hyper pass-through) → bench-upstream",
            "modelway": "loadgen → modelway → bench-upstream",
        },
        "paths": paths_json,
    });
    let json = serde_json::to_string_pretty(&doc)?;
    let dir = &ctx.opts.out_dir;
    let name = if ctx.opts.smoke { "smoke" } else { "latest" };
    let mut written = vec![
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.md")),
    ];
    std::fs::write(&written[0], &json)
        .with_context(|| format!("writing {}", written[0].display()))?;
    std::fs::write(&written[1], &md)
        .with_context(|| format!("writing {}", written[1].display()))?;
    if !ctx.opts.smoke {
        let copy = dir.join(format!("bench-{}.json", stamp.replace([':', '-'], "")));
        std::fs::write(&copy, &json).with_context(|| format!("writing {}", copy.display()))?;
        written.push(copy);
    }
    for w in written {
        eprintln!("bench: wrote {}", w.display());
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn budgets_judge_the_median() {
        let p = Profile::smoke();
        let mut reps = Vec::new();
        for (f, m) in [(10.0, 11.0), (10.0, 13.0), (10.0, 11.5)] {
            let mut r = Rep::default();
            r.set("cpu.r2000_0ms", "floor", f);
            r.set("cpu.r2000_0ms", "modelway", m);
            reps.push(r);
        }
        let path = PathResult {
            spec: super::super::PATHS[0],
            status: "measured".into(),
            reps,
            aborted: Vec::new(),
        };
        let b = judge(&p, &path);
        assert_eq!(b[0].met, Some(true), "{:?}", b[0]);
        assert_eq!(b[0].met_in_reps, "2/3");
        assert_eq!(b[1].met, None);
        let t = results_table(&p, &path.reps).text();
        assert!(t.contains("1.15× [1.10×…1.30×]"), "{t}");
    }
}
