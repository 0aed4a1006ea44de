//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`  — what must pass before every commit: format check, clippy with
//!   warnings denied, the release binary's link flags (a small program linked with
//!   them), the workspace tests (doc tests included), the embedding example
//!   (`crates/providers/examples/embedded.rs`), `cargo doc` with warnings denied, the
//!   scaffold check (`scaffold-check`: a provider scaffolded in a temporary copy builds,
//!   lints, and its tests say "translate me"), the end-to-end suite, then the benchmark
//!   smoke run (seconds; checks the harness works, asserts no timings). The tests of
//!   the Redis limit store need `redis-server`: `ci` installs it with apt-get when it is
//!   missing and sets `MODELWAY_REQUIRE_REDIS=1`, so those tests fail rather than skip;
//!   likewise the Postgres usage ledger's tests need `initdb` and `postgres` (the Debian
//!   package `postgresql`, installed when missing; `MODELWAY_REQUIRE_POSTGRES=1`).
//! - `cargo xtask e2e [PYTEST ARGS…]` — builds the `modelway` and mock-upstream binaries
//!   and runs `tests/python` (the official OpenAI Python SDK against the real binaries)
//!   in a virtualenv kept at `target/e2e-venv`. Extra arguments go to pytest, e.g.
//!   `cargo xtask e2e -k stream -x`. Its client matrix (`test_clients.py`: LangChain,
//!   instructor, pydantic-ai) installs pinned venvs of its own under
//!   `target/client-venvs/` on first use, each step bounded in time.
//! - `cargo xtask new-provider NAME` — scaffolds `providers/NAME` (crate
//!   `modelway-NAME`) on core's provider kit, with its conformance test, its workspace
//!   entries and its registration line in `builtin_registry()`; its tests fail with
//!   "translate me" until it is written (`scaffold.rs`, docs/adding-a-provider.md).
//!   `ci` runs it in a temporary copy of the workspace and checks exactly that.
//! - `cargo xtask config-reference [--write]` — checks the config reference in
//!   README.md against the types that parse the config (`gateway-bin/tests/
//!   config_reference.rs`: the provider kinds table generated from the factories, every
//!   key of every table described, the reference block a config that builds);
//!   `--write` regenerates the table first. `ci` runs it with the workspace tests.
//! - `cargo xtask bench [--smoke] [--reps N] [--no-pin]` — release build, then the
//!   benchmark of `crates/bench` (gateway vs a direct call vs a minimal hyper proxy);
//!   table on stdout, JSON under `target/bench/`. See `bench.rs` and BENCHMARKS.md.
//! - `cargo xtask hot-symbols` — regenerates `gateway-bin/link/hot-symbols.txt`, the
//!   functions the release gateway runs, which `gateway-bin/build.rs` gives the linker
//!   to place together (`hot_symbols.rs`; needs `valgrind`).
//!
//! Depends on nothing but `std` and `anyhow`; every step is an external command whose
//! failure stops the run with the command line that failed.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

mod bench;
mod hot_symbols;
mod scaffold;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci                 fmt --check, clippy -D warnings, the release link flags
                     (a small program linked with them), workspace tests, the embedding
                     example, cargo doc -D warnings, the scaffold check (new-provider
                     probe in a copy), e2e, bench smoke
  e2e [PYTEST ARGS]  build the binaries and run tests/python with the OpenAI Python SDK
  new-provider NAME  scaffold providers/NAME (crate modelway-NAME) on the provider kit,
                     registered, with a conformance test that says \"translate me\"
  scaffold-check     ci's check of new-provider: scaffold `probe` in a temporary copy
                     of the workspace, build, lint and test it there
  config-reference [--write]
                     check README.md's config reference against the config's types
                     and the factories (--write: regenerate its provider kinds table)
  bench [--smoke] [--reps N] [--no-pin]
                     release build, then modelway vs direct vs a floor proxy; table on
                     stdout, JSON in target/bench/ (--smoke: debug build, seconds)
  link-check         ci's check that this host's linker takes the release binary's
                     link flags (gateway-bin/link/flags.rs)
  hot-symbols        regenerate gateway-bin/link/hot-symbols.txt (the release binary's
                     link order) from a callgrind run of the gateway; needs valgrind
  help               this text
";

/// Set for the test steps of `ci`: the Redis store tests fail instead of skipping when
/// `redis-server` is missing.
const REQUIRE_REDIS: (&str, &str) = ("MODELWAY_REQUIRE_REDIS", "1");
/// Likewise for the Postgres ledger tests and `initdb` / `postgres`.
const REQUIRE_POSTGRES: (&str, &str) = ("MODELWAY_REQUIRE_POSTGRES", "1");

/// The end-to-end virtualenv, relative to the workspace root.
const VENV: &str = "target/e2e-venv";
/// Written into the venv after a successful `pip install`; holds the requirements text
/// it installed, so an unchanged file skips pip (and the network) next time.
const REQUIREMENTS_STAMP: &str = ".modelway-requirements";

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<()> {
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("no task given");
    };
    let root = workspace_root()?;
    match task.to_str() {
        Some("ci") => {
            if !rest.is_empty() {
                bail!("`ci` takes no arguments");
            }
            ci(&root)
        }
        Some("e2e") => e2e(&root, rest, &[]),
        Some("scaffold-check") => scaffold::ci_check(&root, &target_dir(&root)),
        Some("new-provider") => match rest {
            [name] => scaffold::new_provider(&root, &name.to_string_lossy()),
            _ => bail!("usage: cargo xtask new-provider NAME"),
        },
        Some("config-reference") => config_reference(&root, rest),
        Some("bench") => bench::bench(&root, &bench::BenchOpts::parse(rest)?),
        Some("link-check") => hot_symbols::link_check(&root),
        Some("hot-symbols") => {
            if !rest.is_empty() {
                bail!("`hot-symbols` takes no arguments");
            }
            hot_symbols::hot_symbols(&root)
        }
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown task `{}`", task.to_string_lossy());
        }
    }
}

/// Where cargo builds: `$CARGO_TARGET_DIR`, else `target/` of the workspace.
fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target"), PathBuf::from)
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent directory", manifest_dir.display()))
}

fn ci(root: &Path) -> Result<()> {
    step("cargo fmt --check");
    cargo(root)
        .args(["fmt", "--all", "--", "--check"])
        .run_checked("formatting differs; run `cargo fmt --all`")?;

    step("cargo clippy");
    cargo(root)
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run_checked("clippy found problems")?;

    hot_symbols::link_check(root)?;

    ensure_redis_server()?;
    ensure_postgres()?;

    step("cargo test");
    cargo(root)
        .args(["test", "--workspace"])
        .env(REQUIRE_REDIS.0, REQUIRE_REDIS.1)
        .env(REQUIRE_POSTGRES.0, REQUIRE_POSTGRES.1)
        .run_checked("workspace tests failed")?;

    // The built-in registry is generated from the providers crate's dependencies, each
    // behind its feature: with one feature on, only that provider's kinds are there.
    step("cargo test -p modelway-providers --no-default-features --features gemini");
    cargo(root)
        .args([
            "test",
            "-p",
            "modelway-providers",
            "--lib",
            "--no-default-features",
            "--features",
            "gemini",
        ])
        .run_checked("the providers registry with only `gemini` on is wrong")?;

    // The embedding example is the embedder's contract: it must build and run.
    step("cargo run --example embedded");
    cargo(root)
        .args(["run", "-p", "modelway-providers", "--example", "embedded"])
        .run_checked("the embedding example (crates/providers/examples/embedded.rs) failed")?;

    // Every public item's rustdoc, with intra-doc links checked; the doc tests ran
    // with `cargo test` above.
    step("cargo doc --no-deps");
    cargo(root)
        .args(["doc", "--no-deps", "--workspace"])
        .env("RUSTDOCFLAGS", "-Dwarnings")
        .run_checked("rustdoc found problems")?;

    // Reuses the build above: only the copy's own crates compile again.
    scaffold::ci_check(root, &target_dir(root))?;

    e2e(root, &[], &[REQUIRE_REDIS, REQUIRE_POSTGRES])?;
    bench::bench(
        root,
        &bench::BenchOpts {
            smoke: true,
            ..bench::BenchOpts::default()
        },
    )?;
    step("ci passed");
    Ok(())
}

/// `config-reference [--write]`: the README's config reference against the types.
fn config_reference(root: &Path, args: &[OsString]) -> Result<()> {
    let write = match args {
        [] => false,
        [a] if a == "--write" => true,
        _ => bail!("usage: cargo xtask config-reference [--write]"),
    };
    let mut test = cargo(root);
    test.args(["test", "-p", "modelway", "--test", "config_reference"]);
    if write {
        step("regenerating README.md's provider kinds table");
        let mut regen = cargo(root);
        regen
            .args(["test", "-p", "modelway", "--test", "config_reference"])
            .args(["the_provider_kinds_table_is_what_the_factories_declare"])
            .env("MODELWAY_WRITE_REFERENCE", "1")
            .run_checked("regenerating the table failed")?;
    }
    step("checking README.md's config reference");
    test.run_checked("README.md's config reference drifted from the config's types")
}

/// The end-to-end suites; `envs` are set for every command they run.
fn e2e(root: &Path, pytest_args: &[OsString], envs: &[(&str, &str)]) -> Result<()> {
    step("building modelway and modelway-mock-upstream");
    cargo(root)
        .envs(envs.iter().copied())
        .args([
            "build",
            "-p",
            "modelway",
            "-p",
            "modelway-testkit",
            "--bins",
        ])
        .run_checked("building the e2e binaries failed")?;

    let target_dir = root.join("target").join("debug");
    let gateway = target_dir.join(exe("modelway"));
    let mock = target_dir.join(exe("modelway-mock-upstream"));
    for bin in [&gateway, &mock] {
        if !bin.is_file() {
            bail!(
                "{} was not built; does its crate define that binary?",
                bin.display()
            );
        }
    }

    let python = ensure_venv(root)?;

    step("pytest tests/python");
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root)
        .args(["-m", "pytest", "-q", "tests/python"])
        .args(pytest_args)
        .env("MODELWAY_BIN", &gateway)
        .env("MOCK_UPSTREAM_BIN", &mock)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(envs.iter().copied());
    pytest.run_checked("end-to-end tests failed")?;

    sdk_suite(root, &gateway, &mock, envs)
}

/// Runs the official SDKs' own generated API tests against the real binaries: openai-python's
/// (chat, embeddings and Responses `create`, models list/retrieve) and anthropic-sdk-python's
/// (Messages `create` and `count_tokens`, plain and beta; models list/retrieve), the latter
/// through an Anthropic upstream and through a translated OpenAI-compatible one.
/// `tests/sdk-suite/run.py` fetches the pinned sdists once into `target/sdk-suite`, keeps a
/// venv per SDK, starts the servers and exits non-zero when a leg fails. See
/// tests/sdk-suite/README.md.
fn sdk_suite(root: &Path, gateway: &Path, mock: &Path, envs: &[(&str, &str)]) -> Result<()> {
    step("the openai and anthropic SDKs' own API tests (tests/sdk-suite)");
    Command::new("python3")
        .current_dir(root)
        .arg(Path::new("tests").join("sdk-suite").join("run.py"))
        .env("MODELWAY_BIN", gateway)
        .env("MOCK_UPSTREAM_BIN", mock)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(envs.iter().copied())
        .run_checked("the SDKs' own API tests failed against the gateway")
}

/// Makes sure the Redis store tests can start `redis-server`: `$MODELWAY_REDIS_SERVER`
/// if set, else `redis-server` on PATH, else installed with apt-get (as root, or through
/// `sudo -n`; `apt-get update` only if the first install fails).
fn ensure_redis_server() -> Result<()> {
    if let Some(p) = env::var_os("MODELWAY_REDIS_SERVER").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(());
        }
        bail!(
            "MODELWAY_REDIS_SERVER={} is not a file; point it at a redis-server binary or unset it",
            p.display()
        );
    }
    if on_path("redis-server").is_some() {
        return Ok(());
    }
    step("installing redis-server (needed by the Redis limit store tests)");
    let hint = "install redis-server yourself (e.g. `apt-get install redis-server`, \
                `brew install redis`) or set MODELWAY_REDIS_SERVER to its path";
    if on_path("apt-get").is_none() {
        bail!("redis-server is not on PATH and there is no apt-get to install it: {hint}");
    }
    let install = ["install", "-y", "--no-install-recommends", "redis-server"];
    if let Err(first) = apt_get(&install) {
        eprintln!("xtask: {first:#}; running apt-get update and trying again");
        apt_get(&["update"]).with_context(|| format!("could not install redis-server: {hint}"))?;
        apt_get(&install).with_context(|| format!("could not install redis-server: {hint}"))?;
    }
    if on_path("redis-server").is_none() {
        bail!("apt-get installed redis-server but it is not on PATH: {hint}");
    }
    Ok(())
}

/// Makes sure the Postgres ledger tests can start a server: `$MODELWAY_POSTGRES_BIN` if
/// set (a directory with `initdb` and `postgres`), else `initdb` on PATH or in
/// `/usr/lib/postgresql/*/bin`, else the Debian package `postgresql` installed with
/// apt-get. The tests find the binaries the same way (`modelway_testkit::postgres`).
fn ensure_postgres() -> Result<()> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(p) = env::var_os("MODELWAY_POSTGRES_BIN").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if has(&p) {
            return Ok(());
        }
        bail!(
            "MODELWAY_POSTGRES_BIN={} holds no initdb and postgres; point it at Postgres's bin directory or unset it",
            p.display()
        );
    }
    let debian = || {
        fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .any(|e| has(&e.path().join("bin")))
    };
    if on_path("initdb").is_some() || debian() {
        return Ok(());
    }
    step("installing postgresql (needed by the Postgres usage ledger tests)");
    let hint = "install Postgres yourself (e.g. `apt-get install postgresql`) or set \
                MODELWAY_POSTGRES_BIN to the directory holding initdb and postgres";
    if on_path("apt-get").is_none() {
        bail!("Postgres is not installed and there is no apt-get to install it: {hint}");
    }
    let install = ["install", "-y", "--no-install-recommends", "postgresql"];
    if let Err(first) = apt_get(&install) {
        eprintln!("xtask: {first:#}; running apt-get update and trying again");
        apt_get(&["update"]).with_context(|| format!("could not install postgresql: {hint}"))?;
        apt_get(&install).with_context(|| format!("could not install postgresql: {hint}"))?;
    }
    if on_path("initdb").is_none() && !debian() {
        bail!("apt-get installed postgresql but no initdb is found: {hint}");
    }
    Ok(())
}

/// `apt-get ARGS` non-interactively: directly as root, else through `sudo -n` (never a
/// password prompt).
fn apt_get(args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    } else if on_path("sudo").is_some() {
        // sudo resets the environment: pass the variable through `env`.
        let mut c = Command::new("sudo");
        c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    } else {
        bail!("apt-get needs root, and this is neither root nor has sudo");
    };
    cmd.args(args)
        .run_checked(&format!("`apt-get {}` failed", args.join(" ")))
}

/// Whether this process runs as root (`id -u` prints 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

/// `name` in a directory of PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(exe(name)))
        .find(|p| p.is_file())
}

/// Creates `target/e2e-venv` if missing and installs `tests/python/requirements.txt`
/// into it unless that exact file was installed before. Returns the venv's python.
fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(VENV);
    let python = venv_python(&venv);
    if !python.is_file() {
        step("creating target/e2e-venv");
        Command::new("python3")
            .current_dir(root)
            .args([OsStr::new("-m"), OsStr::new("venv"), venv.as_os_str()])
            .run_checked("`python3 -m venv` failed; is python3 (with venv) installed?")?;
    }

    let req_path = root.join("tests").join("python").join("requirements.txt");
    let wanted =
        fs::read_to_string(&req_path).with_context(|| format!("reading {}", req_path.display()))?;
    let stamp = venv.join(REQUIREMENTS_STAMP);
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }

    step("installing tests/python/requirements.txt");
    Command::new(&python)
        .current_dir(root)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&req_path)
        .run_checked("pip install failed")?;
    fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn exe(name: &str) -> String {
    format!("{name}{}", env::consts::EXE_SUFFIX)
}

/// `cargo` as invoked us (so `cargo +nightly xtask` stays on nightly), in `root`.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn step(what: &str) {
    eprintln!("\n==> xtask: {what}");
}

trait RunChecked {
    /// Runs the command with inherited stdio; an error names the command line and
    /// says `what` went wrong if it could not start or did not exit 0.
    fn run_checked(&mut self, what: &str) -> Result<()>;
}

impl RunChecked for Command {
    fn run_checked(&mut self, what: &str) -> Result<()> {
        let line = command_line(self);
        let status = self
            .status()
            .with_context(|| format!("could not start `{line}`"))?;
        if !status.success() {
            bail!("{what} (`{line}` exited with {status})");
        }
        Ok(())
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
