//! `cargo xtask bench [--smoke] [--reps N] [--no-pin]`: builds the gateway and the
//! benchmark harness (`crates/bench`) and runs its orchestrator, `bench-run`, which
//! starts the mock upstream, the floor proxy and the gateway, drives every phase under a
//! hard time bound, prints the table and writes `target/bench/latest.json` (plus a
//! timestamped copy and `latest.md`). Method and budgets: BENCHMARKS.md.
//!
//! `--smoke` builds the debug profile and runs tiny phases (seconds): it checks that
//! everything runs and that every stream arrives complete, never timings; `cargo xtask
//! ci` runs it and it writes `target/bench/smoke.json` instead of `latest.json`.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, exe, step, RunChecked};

/// Options of `cargo xtask bench`.
#[derive(Debug, Default)]
pub struct BenchOpts {
    pub smoke: bool,
    pub reps: Option<u32>,
    pub no_pin: bool,
}

impl BenchOpts {
    pub fn parse(args: &[OsString]) -> Result<Self> {
        let mut opts = Self::default();
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--smoke" => opts.smoke = true,
                "--no-pin" => opts.no_pin = true,
                "--reps" => {
                    let v = it.next().context("--reps needs a number")?;
                    let n: u32 = v
                        .parse()
                        .with_context(|| format!("--reps: not a number: {v:?}"))?;
                    if n == 0 {
                        bail!("--reps must be at least 1");
                    }
                    opts.reps = Some(n);
                }
                other => {
                    bail!("`bench` does not take `{other}` (it takes --smoke, --reps N, --no-pin)")
                }
            }
        }
        Ok(opts)
    }
}

pub fn bench(root: &Path, opts: &BenchOpts) -> Result<()> {
    let profile = if opts.smoke { "debug" } else { "release" };
    step(&format!(
        "building modelway and the benchmark harness ({profile})"
    ));
    let mut build = cargo(root);
    build.arg("build");
    if !opts.smoke {
        build.arg("--release");
    }
    build
        .args(["-p", "modelway", "-p", "modelway-bench", "--bins"])
        .run_checked("building the benchmark binaries failed")?;

    let bin_dir = root.join("target").join(profile);
    if !opts.smoke {
        // A list the binary no longer matches costs layout (and idle RSS), not a build:
        // say how much of it still applies (`cargo xtask hot-symbols` renews it).
        crate::hot_symbols::coverage(
            &root.join(crate::hot_symbols::FILE),
            &bin_dir.join(exe("modelway")),
        );
    }
    let runner = bin_dir.join(exe("bench-run"));
    if !runner.is_file() {
        bail!("{} was not built", runner.display());
    }
    step(if opts.smoke {
        "bench smoke (checks the harness runs; asserts no timings)"
    } else {
        "bench (release; several minutes)"
    });
    let mut run = Command::new(&runner);
    run.current_dir(root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(root.join("target").join("bench"));
    if opts.smoke {
        run.arg("--smoke");
    }
    if let Some(n) = opts.reps {
        run.args(["--reps", &n.to_string()]);
    }
    if opts.no_pin {
        run.arg("--no-pin");
    }
    run.run_checked(if opts.smoke {
        "the bench smoke run failed"
    } else {
        "the benchmark failed"
    })
}
