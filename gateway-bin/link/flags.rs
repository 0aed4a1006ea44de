// The linker flags of the release `modelway` binary, shared by `gateway-bin/build.rs`
// (which passes them) and `cargo xtask ci` (which links a small program with them, so
// CI fails if this host's linker would refuse them). Included with `include!`: plain
// functions on `std` only.

/// The flags for a release build for `target`, given the symbol ordering file (if
/// present): none unless the target is x86_64 Linux with glibc, linked by rustc's
/// bundled LLD (rustc ≥ 1.90 with no linker configured).
///
/// Not among them: `-z pack-relative-relocs` (measured: −1.4 MiB idle RSS), because a
/// binary linked with it does not start on a glibc older than 2.36 — built on Debian 12
/// and copied to an Ubuntu 22.04 host, it would fail where it runs today.
pub fn release_link_args(target: &str, order_file: Option<&std::path::Path>) -> Vec<String> {
    let mut args = Vec::new();
    if target != "x86_64-unknown-linux-gnu" || !default_linker_is_lld() {
        return args;
    }
    if let Some(order) = order_file {
        args.push(format!("-Wl,--symbol-ordering-file={}", order.display()));
        args.push("-Wl,--no-warn-symbol-ordering".to_owned());
    }
    args
}

/// rustc ≥ 1.90 links x86_64 Linux with its bundled LLD unless a linker or linker
/// flavour is configured; GNU ld would refuse `--symbol-ordering-file`.
fn default_linker_is_lld() -> bool {
    if std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default()
        + &std::env::var("RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let Some(release) = rustc_vv("release") else {
        return false;
    };
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    matches!((parts.next(), parts.next()), (Some(Some(1)), Some(Some(minor))) if minor >= 90)
}

/// One field of `rustc -vV` (`release`, `host`…), from the rustc cargo runs (`$RUSTC`).
pub fn rustc_vv(field: &str) -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-vV").output().ok()?;
    let prefix = format!("{field}: ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
}
