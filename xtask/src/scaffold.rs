//! `cargo xtask new-provider NAME`: a provider crate on core's kit, ready to be
//! written, and the check `ci` runs on it in a copy of the workspace.
//!
//! The crate is made from `xtask/templates/provider/` (`{{name}}`, `{{ident}}` and
//! `{{Type}}` filled in, `.tmpl` taken off). Outside it the scaffold touches only what
//! registering a crate needs: the root `Cargo.toml` not at all (its members take
//! `providers/*`); in the crate that holds `builtin_registry()`, one dependency
//! line, which its `build.rs` turns into the registration. `ci_check` counts the
//! lines touched outside the new crate, so the promise is kept.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{cargo, step, RunChecked};

/// The template files, by their path under `providers/NAME/` (without `.tmpl`).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/provider/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/provider/src/lib.rs.tmpl"),
    ),
    (
        "src/request.rs",
        include_str!("../templates/provider/src/request.rs.tmpl"),
    ),
    (
        "src/response.rs",
        include_str!("../templates/provider/src/response.rs.tmpl"),
    ),
    (
        "src/stream.rs",
        include_str!("../templates/provider/src/stream.rs.tmpl"),
    ),
    (
        "src/error.rs",
        include_str!("../templates/provider/src/error.rs.tmpl"),
    ),
    (
        "tests/conformance.rs",
        include_str!("../templates/provider/tests/conformance.rs.tmpl"),
    ),
    (
        "tests/data/text-stream.sse",
        include_str!("../templates/provider/tests/data/text-stream.sse.tmpl"),
    ),
    (
        "tests/data/tool-stream.sse",
        include_str!("../templates/provider/tests/data/tool-stream.sse.tmpl"),
    ),
    (
        "tests/data/text-answer.json",
        include_str!("../templates/provider/tests/data/text-answer.json.tmpl"),
    ),
    (
        "tests/data/tool-answer.json",
        include_str!("../templates/provider/tests/data/tool-answer.json.tmpl"),
    ),
];

/// What the scaffold's conformance test says until the dialect is written.
pub(crate) const TRANSLATE_ME: &str = "translate me";

/// A provider's names, checked once.
#[derive(Debug)]
struct Names {
    /// `probe`, `my-llm`: the kind and directory.
    name: String,
    /// `probe`, `my_llm`: in Rust paths (`modelway_my_llm`).
    ident: String,
    /// `Probe`, `MyLlm`: the type prefix.
    ty: String,
}

impl Names {
    fn new(name: &str) -> Result<Self> {
        let ok = name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !ok {
            bail!(
                "provider name `{name}`: use lowercase letters, digits and single dashes, \
                 starting with a letter (e.g. `probe`, `my-llm`)"
            );
        }
        let ty = name
            .split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            ident: name.replace('-', "_"),
            ty,
        })
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{ident}}", &self.ident)
            .replace("{{Type}}", &self.ty)
    }

    fn krate(&self) -> String {
        format!("modelway-{}", self.name)
    }
}

/// `cargo xtask new-provider NAME` in the workspace at `root`.
pub(crate) fn new_provider(root: &Path, name: &str) -> Result<()> {
    let names = Names::new(name)?;
    let dir = root.join("providers").join(&names.name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let registry = find_registry(root)?;
    step(&format!("scaffolding providers/{}", names.name));
    for (path, template) in TEMPLATES {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, names.fill(template))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    check_workspace(root)?;
    register_in_registry(root, &registry, &names)?;
    // The templates are formatted for their placeholders; a name of another length
    // wraps differently.
    cargo(root)
        .args(["fmt", "-p", &names.krate()])
        .run_checked("formatting the new crate failed")?;
    eprintln!(
        "xtask: providers/{name} is crate `{}` on core's kit, registered in {}.\n\
         Its tests fail with \"{TRANSLATE_ME}\" until it is written: \
         `cargo test -p {}`; see docs/adding-a-provider.md.",
        names.krate(),
        registry
            .manifest
            .strip_prefix(root)
            .unwrap_or(&registry.manifest)
            .display(),
        names.krate(),
    );
    Ok(())
}

/// Where `builtin_registry()` lives: its source file and its crate's manifest.
struct Registry {
    lib: PathBuf,
    manifest: PathBuf,
}

/// Finds the one `fn builtin_registry()` of the workspace (in the binary today; a
/// crate of the built-in providers may hold it instead).
fn find_registry(root: &Path) -> Result<Registry> {
    let mut found = Vec::new();
    for dir in ["gateway-bin", "crates", "providers"] {
        find_files(&root.join(dir), &mut |p| {
            if p.extension().is_some_and(|e| e == "rs")
                && fs::read_to_string(p).is_ok_and(|s| s.contains("pub fn builtin_registry()"))
            {
                found.push(p.to_path_buf());
            }
        })?;
    }
    let [lib] = found.as_slice() else {
        bail!(
            "expected one `pub fn builtin_registry()` in the workspace, found {}: {found:?}",
            found.len()
        );
    };
    let manifest = lib
        .ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
        .with_context(|| format!("no Cargo.toml above {}", lib.display()))?;
    Ok(Registry {
        lib: lib.clone(),
        manifest,
    })
}

fn find_files(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            find_files(&path, f)?;
        } else {
            f(&path);
        }
    }
    Ok(())
}

/// The root manifest needs nothing: its members and default members take
/// `providers/*`. Checked, so a workspace that lists them one by one says so.
fn check_workspace(root: &Path) -> Result<()> {
    let path = root.join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let globbed = |key: &str| {
        text.lines()
            .skip_while(|l| !l.starts_with(key))
            .take_while(|l| !l.trim().is_empty())
            .any(|l| l.contains("\"providers/*\""))
    };
    if !globbed("members = [") || !globbed("default-members = [") {
        bail!(
            "{}: `members` and `default-members` must take \"providers/*\", so a new \
             provider crate needs no entry there",
            path.display()
        );
    }
    Ok(())
}

/// The registry crate's dependency on the new crate: one line, its last provider
/// dependency. Its `build.rs` turns every `modelway-*` dependency into a call of that
/// crate's `register`, so nothing else is written there.
fn register_in_registry(root: &Path, r: &Registry, n: &Names) -> Result<()> {
    let text = fs::read_to_string(&r.manifest)
        .with_context(|| format!("reading {}", r.manifest.display()))?;
    if !r.manifest.with_file_name("build.rs").is_file()
        || !fs::read_to_string(&r.lib).is_ok_and(|s| s.contains("register_dependencies"))
    {
        bail!(
            "{} does not generate its registrations from its dependencies (no build.rs \
             or no `register_dependencies` call)",
            r.manifest.display()
        );
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // The last `modelway-…` provider in `[dependencies]` (not a dev-dependency).
    let section = lines
        .iter()
        .position(|l| l.trim() == "[dependencies]")
        .with_context(|| format!("no [dependencies] in {}", r.manifest.display()))?;
    let section_end = lines[section + 1..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |i| section + 1 + i);
    let last = (section + 1..section_end)
        .rev()
        .find(|&i| lines[i].starts_with("modelway-"))
        .with_context(|| format!("no modelway dependency in {}", r.manifest.display()))?;
    // The path from the registry crate to providers/NAME.
    let depth = r
        .manifest
        .parent()
        .and_then(|d| d.strip_prefix(root).ok())
        .map_or(0, |d| d.components().count());
    let path = format!("{}providers/{}", "../".repeat(depth), n.name);
    lines.insert(last + 1, format!("{} = {{ path = \"{path}\" }}", n.krate()));
    write_lines(&r.manifest, &lines)
}

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut out = lines.join("\n");
    out.push('\n');
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The `ci` step: copies the workspace (without `target/` and `.git`) to a temporary
/// directory, runs `new-provider probe` there, checks the result builds,
/// is formatted and clippy-clean, that the binary compiles with its registration, and
/// that its tests run: the unit tests pass and the conformance test fails saying
/// "translate me" — what a scaffold promises. `target_dir` is reused, so only the
/// workspace's own crates are compiled again.
pub(crate) fn ci_check(root: &Path, target_dir: &Path) -> Result<()> {
    // One fixed place per workspace, and source times kept: what did not change since
    // the last run is not compiled again.
    let copy = std::env::temp_dir().join(format!("modelway-scaffold-{:016x}", {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        h.finish()
    }));
    if copy.exists() {
        fs::remove_dir_all(&copy).with_context(|| format!("removing {}", copy.display()))?;
    }
    let _cleanup = RemoveOnDrop(copy.clone());
    step(&format!("copying the workspace to {}", copy.display()));
    copy_tree(root, &copy, true)?;
    let in_copy = |args: &[&str]| {
        let mut c = cargo(&copy);
        c.env("CARGO_TARGET_DIR", target_dir).args(args);
        c
    };
    // In this process, on the copy: a `cargo xtask` run there would find its workspace
    // where it was compiled (the shared target dir holds one xtask binary), not in the
    // copy.
    step("new-provider probe (in the copy)");
    new_provider(&copy, "probe")?;
    let touched = lines_touched_outside(root, &copy, &copy.join("providers").join("probe"))?;
    let total: usize = touched.iter().map(|(_, n)| n).sum();
    eprintln!("xtask: outside providers/probe the scaffold touched {total} line(s): {touched:?}");
    if total > MAX_LINES_OUTSIDE {
        bail!(
            "the scaffold touched {total} lines outside its crate ({touched:?}); adding a \
             provider should take at most {MAX_LINES_OUTSIDE}: its dependency in the crate \
             of the built-in providers"
        );
    }
    step("the scaffold: fmt, clippy, the binary with it registered");
    in_copy(&["fmt", "--all", "--", "--check"]).run_checked("the scaffold is not formatted")?;
    in_copy(&[
        "clippy",
        "-p",
        "modelway-probe",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
    .run_checked("clippy found problems in the scaffold")?;
    in_copy(&["build", "-p", "modelway", "--bin", "modelway"])
        .run_checked("the binary does not compile with the scaffold registered")?;
    // Registered for real: the binary built in the copy knows kind `probe` (a kind it
    // did not register is a config error naming it).
    let config = copy.join("probe.toml");
    fs::write(
        &config,
        "[providers.probe]\nkind = \"probe\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[routes]]\nname = \"probe-model\"\ntargets = [\"probe/probe-model\"]\n",
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let out = std::process::Command::new(target_dir.join("debug").join("modelway"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .context("could not run the binary built with the scaffold")?;
    if !out.status.success() {
        bail!(
            "the binary built with the scaffold does not accept `kind = \"probe\"` \
             (not registered?): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("xtask: the binary built in the copy accepts `kind = \"probe\"`");
    step("the scaffold's tests (expected: unit tests pass, conformance says \"translate me\")");
    let out = in_copy(&["test", "-p", "modelway-probe", "--no-fail-fast"])
        .output()
        .context("could not run the scaffold's tests")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unit_ok =
        text.contains("test tests::the_factory_builds_from_its_table_and_needs_a_base_url ... ok");
    let conformance_failed = text.contains("probe_keeps_the_provider_contract ... FAILED")
        && text.contains("conformance rule(s) failed")
        && text.contains(TRANSLATE_ME);
    if out.status.success() || !unit_ok || !conformance_failed {
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the scaffold's tests did not do what a scaffold promises (exit {}, unit tests \
             passed: {unit_ok}, conformance failed with \"{TRANSLATE_ME}\": \
             {conformance_failed}):\n{}",
            out.status,
            tail.join("\n")
        );
    }
    eprintln!("xtask: the scaffold compiles, its unit tests pass, its conformance test says \"{TRANSLATE_ME}\"");
    Ok(())
}

/// Lines the scaffold may touch outside its crate: the registry crate's dependency
/// line (its `build.rs` makes that the registration too).
const MAX_LINES_OUTSIDE: usize = 1;

/// Each file of `copy` (outside `skip` and `target/`) that differs from its original
/// under `root`, with how many of its lines are new or changed.
fn lines_touched_outside(root: &Path, copy: &Path, skip: &Path) -> Result<Vec<(String, usize)>> {
    let mut files = Vec::new();
    find_files(copy, &mut |p| {
        if !p.starts_with(skip) {
            files.push(p.to_path_buf());
        }
    })?;
    let mut out = Vec::new();
    for new in files {
        let rel = new.strip_prefix(copy).unwrap_or(&new);
        let after = fs::read(&new).with_context(|| format!("reading {}", new.display()))?;
        // A file the scaffold added outside its crate: every line of it counts.
        let before = fs::read(root.join(rel)).unwrap_or_default();
        if after == before {
            continue;
        }
        let (after, before) = (
            String::from_utf8_lossy(&after),
            String::from_utf8_lossy(&before),
        );
        let mut old: Vec<&str> = before.lines().collect();
        let mut changed = 0;
        for line in after.lines() {
            match old.iter().position(|l| *l == line) {
                Some(i) => {
                    old.swap_remove(i);
                }
                None => changed += 1,
            }
        }
        out.push((rel.display().to_string(), changed.max(old.len())));
    }
    Ok(out)
}

/// Removes a directory when dropped (a temporary copy, whatever happened).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies `from` to `to`; at the top, `target/` is left out; `.git` everywhere.
/// By hand rather than a crate: xtask depends on `std` and `anyhow` only, and this is
/// a plain walk.
fn copy_tree(from: &Path, to: &Path, top: bool) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || (top && name == "target") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, false)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            // cargo decides what to rebuild by modification times: keep them.
            let modified = entry.metadata()?.modified()?;
            fs::File::options()
                .write(true)
                .open(&dst)
                .and_then(|f| f.set_modified(modified))
                .with_context(|| format!("setting the time of {}", dst.display()))?;
        }
        // Symlinks are left out: the workspace has none that a build needs.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_derived() {
        let n = Names::new("my-llm").map_err(|e| e.to_string());
        let n = n
            .as_ref()
            .map(|n| (n.ident.as_str(), n.ty.as_str(), n.krate()));
        assert_eq!(n, Ok(("my_llm", "MyLlm", "modelway-my-llm".to_owned())));
        for bad in ["", "Probe", "1x", "a_b", "a-", "a--b", "a b"] {
            assert!(Names::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        let n = Names::new("probe").map_err(|e| e.to_string());
        let Ok(n) = n else {
            panic!("probe is a valid name: {n:?}")
        };
        for (path, t) in TEMPLATES {
            let out = n.fill(t);
            assert!(!out.contains("{{"), "{path}: a placeholder is left: {out}");
        }
    }
}
