//! `cargo xtask hot-symbols`: regenerates `gateway-bin/link/hot-symbols.txt`, the
//! functions the release `modelway` binary runs at startup and on its request paths,
//! hottest first. `gateway-bin/build.rs` hands the file to the linker
//! (`--symbol-ordering-file`), which puts those functions together at the start of
//! `.text`; see BENCHMARKS.md ("Link layout").
//!
//! How: a release build; two `bench-upstream`s (one also speaking Anthropic Messages,
//! one Gemini); the gateway under callgrind (`--demangle=no`, so the names are the
//! linker's); JSON and streamed calls through the OpenAI-compatible, Anthropic and
//! Gemini providers and through the Messages front door, with `loadgen`. The file
//! lists the binary's functions callgrind saw run during startup (a separate run that
//! stops once the gateway listens), then the others of the serving run, each part by
//! its own instruction count: an idle gateway touches only the first part. Needs
//! `valgrind`. Symbol names depend on the toolchain and `Cargo.lock`, not on the
//! source of other functions: run it again after either changes (the file's
//! coverage of the current binary is printed at the end).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, exe, step, RunChecked};

/// The file `gateway-bin/build.rs` reads, relative to the workspace root.
pub const FILE: &str = "gateway-bin/link/hot-symbols.txt";

pub fn hot_symbols(root: &Path) -> Result<()> {
    let version = Command::new("valgrind").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("`valgrind` is needed (apt-get install valgrind)");
    }
    step("building modelway and the benchmark harness (release)");
    cargo(root)
        .args([
            "build",
            "--release",
            "-p",
            "modelway",
            "-p",
            "modelway-bench",
        ])
        .arg("--bins")
        .run_checked("the release build failed")?;
    let bin_dir = root.join("target").join("release");
    let work = root.join("target").join("hot-symbols");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    step("profiling the gateway under callgrind (about a minute)");
    let upstream = |dialect: &str| -> Result<Server> {
        let mut cmd = Command::new(bin_dir.join(exe("bench-upstream")));
        cmd.args(["--port", "0", "--dialect", dialect]).args([
            "--chunks",
            "20",
            "--chunk-interval-ms",
            "0",
        ]);
        Server::start(cmd, "listening on http://", Duration::from_secs(10))
    };
    let anthropic = upstream("anthropic")?;
    let gemini = upstream("gemini")?;
    let config = work.join("modelway.toml");
    fs::write(&config, config_text(&anthropic.addr, &gemini.addr))
        .with_context(|| format!("writing {}", config.display()))?;
    let binary = bin_dir.join(exe("modelway"));
    let under_callgrind = |profile: &Path| -> Result<Server> {
        let _ = fs::remove_file(profile);
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg("--demangle=no")
            .arg(format!("--callgrind-out-file={}", profile.display()))
            .arg(&binary)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn");
        Server::start(cmd, "listening on http://", Duration::from_secs(120))
    };
    // What starting costs: the gateway is stopped as soon as it listens.
    let startup = work.join("callgrind.startup.out");
    under_callgrind(&startup)?.interrupt(Duration::from_secs(60))?;
    let profile = work.join("callgrind.out");
    let mut gateway = under_callgrind(&profile)?;

    let loadgen = bin_dir.join(exe("loadgen"));
    let drive = |dialect: &str, model: &str, args: &[&str]| -> Result<()> {
        let out = Command::new(&loadgen)
            .args([
                "--addr",
                &gateway.addr,
                "--dialect",
                dialect,
                "--model",
                model,
            ])
            .args(["--deadline-s", "120"])
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .context("running loadgen")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let report = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        if !out.status.success() || !report.contains("\"errors\":0") {
            bail!("loadgen {dialect} {model} {args:?} failed: {report}");
        }
        Ok(())
    };
    for model in ["oa", "an", "ge"] {
        drive("openai", model, &["latency", "--requests", "300"])?;
        drive(
            "openai",
            model,
            &["stream", "--requests", "20", "--chunks", "20"],
        )?;
    }
    drive("anthropic", "an", &["latency", "--requests", "300"])?;
    drive(
        "anthropic",
        "an",
        &["stream", "--requests", "20", "--chunks", "20"],
    )?;
    drive(
        "openai",
        "oa",
        &["latency", "--requests", "200", "--concurrency", "8"],
    )?;
    gateway.interrupt(Duration::from_secs(60))?;

    // Startup's functions first, then the request paths': an idle gateway touches
    // only the first part, a serving one mostly the second.
    let first = by_own_cost(&startup, &exe("modelway"))?;
    let seen: std::collections::HashSet<&String> = first.iter().collect();
    let rest: Vec<String> = by_own_cost(&profile, &exe("modelway"))?
        .into_iter()
        .filter(|s| !seen.contains(s))
        .collect();
    let startup_count = first.len();
    let symbols: Vec<String> = first.iter().cloned().chain(rest).collect();
    if startup_count < 100 || symbols.len() < startup_count + 200 {
        bail!(
            "callgrind saw only {startup_count} functions of {} at startup and {} in all; \
             the profile looks wrong",
            symbols.len(),
            binary.display()
        );
    }
    let mut text = String::from(
        "# Generated by `cargo xtask hot-symbols`: the functions the release gateway ran\n\
         # at startup, then those it ran serving JSON and streamed calls (OpenAI-compatible,\n\
         # Anthropic, Gemini, the Messages front door), each part by the functions' own\n\
         # instruction count under callgrind. gateway-bin/build.rs passes it to the linker as\n\
         # --symbol-ordering-file; BENCHMARKS.md, \"Link layout\". Do not edit by hand.\n",
    );
    for s in &symbols {
        text.push_str(s);
        text.push('\n');
    }
    let file = root.join(FILE);
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    step(&format!(
        "wrote {} symbols to {FILE} ({startup_count} run at startup)",
        symbols.len()
    ));
    coverage(&file, &binary);
    Ok(())
}

/// Prints how many of the file's symbols the binary defines (`nm`), if `nm` runs and
/// the file is there.
pub fn coverage(file: &Path, binary: &Path) {
    let Ok(out) = Command::new("nm")
        .arg("--defined-only")
        .arg(binary)
        .output()
    else {
        return;
    };
    let defined: std::collections::HashSet<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let Ok(text) = fs::read_to_string(file) else {
        return;
    };
    let wanted: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let found = wanted.iter().filter(|s| defined.contains(*s)).count();
    eprintln!(
        "{found} of the {} symbols in {} are defined in {}",
        wanted.len(),
        file.display(),
        binary.display()
    );
}

fn config_text(anthropic: &str, gemini: &str) -> String {
    format!(
        "# generated by cargo xtask hot-symbols\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\n\
         [providers.oa]\nkind = \"openai-compatible\"\nbase_url = \"http://{anthropic}/v1\"\napi_key = \"profile\"\n\n\
         [providers.an]\nkind = \"anthropic\"\nbase_url = \"http://{anthropic}\"\napi_key = \"profile\"\n\n\
         [providers.ge]\nkind = \"gemini\"\nbase_url = \"http://{gemini}\"\napi_key = \"profile\"\n\n\
         [[routes]]\nname = \"oa\"\ntargets = [\"oa/bench-model\"]\n\n\
         [[routes]]\nname = \"an\"\ntargets = [\"an/bench-model\"]\n\n\
         [[routes]]\nname = \"ge\"\ntargets = [\"ge/bench-model\"]\n"
    )
}

/// The mangled names of the functions of `object` (a file name) in a callgrind
/// profile, by their own cost, highest first.
fn by_own_cost(profile: &Path, object: &str) -> Result<Vec<String>> {
    let file = fs::File::open(profile).with_context(|| format!("reading {}", profile.display()))?;
    // Callgrind names each object and function in full once, then by `(id)`.
    let mut objects: HashMap<String, String> = HashMap::new();
    let mut functions: HashMap<String, String> = HashMap::new();
    let mut own: HashMap<String, (u64, bool)> = HashMap::new();
    let (mut current, mut current_object, mut in_call) = (None::<String>, String::new(), false);
    fn named(table: &mut HashMap<String, String>, spec: &str) -> String {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix('(') {
            if let Some((id, name)) = rest.split_once(')') {
                let name = name.trim();
                if !name.is_empty() {
                    table.insert(id.to_owned(), name.to_owned());
                }
                return table.get(id).cloned().unwrap_or_default();
            }
        }
        spec.to_owned()
    }
    for line in BufReader::new(file).lines() {
        let line = line.context("reading the callgrind profile")?;
        if let Some(spec) = line.strip_prefix("ob=") {
            current_object = named(&mut objects, spec);
        } else if let Some(spec) = line.strip_prefix("cob=") {
            named(&mut objects, spec);
        } else if let Some(spec) = line.strip_prefix("fn=") {
            let name = named(&mut functions, spec);
            // `'2`, `'3`…: callgrind's names for deeper levels of a recursion.
            let name = match name.rsplit_once('\'') {
                Some((base, level)) if level.bytes().all(|b| b.is_ascii_digit()) => base.to_owned(),
                _ => name,
            };
            let mine = Path::new(&current_object)
                .file_name()
                .is_some_and(|f| f == object);
            own.entry(name.clone()).or_insert((0, mine));
            current = Some(name);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            named(&mut functions, spec);
        } else if line.starts_with("calls=") {
            in_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            // A cost line: the one right after `calls=` is the call's inclusive cost.
            if std::mem::take(&mut in_call) {
                continue;
            }
            let cost = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(entry) = current.as_ref().and_then(|c| own.get_mut(c)) {
                entry.0 += cost;
            }
        }
    }
    let mut names: Vec<(String, u64)> = own
        .into_iter()
        .filter(|(name, (_, mine))| *mine && (name.starts_with("_ZN") || name.starts_with("_R")))
        .map(|(name, (cost, _))| (name, cost))
        .collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(names.into_iter().map(|(n, _)| n).collect())
}

/// A child process that prints `marker` followed by its address on stdout.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(mut cmd: Command, marker: &str, within: Duration) -> Result<Self> {
        let line = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {line}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = String::new();
            while reader.read_line(&mut buf).is_ok_and(|n| n > 0) {
                if let Some(at) = buf.find(&marker) {
                    let addr = buf[at + marker.len()..].trim().to_owned();
                    let _ = tx.send(addr);
                    break;
                }
                buf.clear();
            }
            // Keep draining, so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut reader.into_inner(), &mut std::io::sink());
        });
        match rx.recv_timeout(within) {
            Ok(addr) => Ok(Self { child, addr }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{line} did not say where it listens within {within:?}")
            }
        }
    }

    /// SIGINT (callgrind writes its profile when the gateway exits), bounded.
    fn interrupt(&mut self, within: Duration) -> Result<()> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .run_checked("signalling the gateway failed")?;
        let start = Instant::now();
        while start.elapsed() < within {
            if self
                .child
                .try_wait()
                .context("waiting for the gateway")?
                .is_some()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the gateway did not exit within {within:?} of SIGINT")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod flags {
    include!("../../gateway-bin/link/flags.rs");
}

/// `cargo xtask ci`'s check that this host's linker takes the release binary's link
/// flags (`gateway-bin/link/flags.rs`; CI itself builds only the debug profile): a
/// small program linked with them, run.
pub fn link_check(root: &Path) -> Result<()> {
    let host = flags::rustc_vv("host").context("rustc -vV names no host")?;
    let order = root.join(FILE);
    let args = flags::release_link_args(&host, order.is_file().then_some(order.as_path()));
    if args.is_empty() {
        step(&format!(
            "release link flags: none on {host}; nothing to check"
        ));
        return Ok(());
    }
    step(&format!(
        "release link flags accepted by this linker: {}",
        args.join(" ")
    ));
    let dir = root.join("target").join("link-check");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = dir.join("hello.rs");
    fs::write(&source, "fn main() { println!(\"linked\"); }\n")
        .with_context(|| format!("writing {}", source.display()))?;
    let program = dir.join(exe("hello"));
    let mut rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    rustc
        .args(["-O", "--edition", "2021"])
        .arg(&source)
        .arg("-o")
        .arg(&program);
    for a in &args {
        rustc.arg("-C").arg(format!("link-arg={a}"));
    }
    rustc
        .run_checked("the linker refused the release binary's flags (gateway-bin/link/flags.rs)")?;
    let out = Command::new(&program)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() || out.stdout != b"linked\n" {
        bail!(
            "a program linked with the release flags does not run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
