//! What the real-service fixtures ([`crate::RedisServer`], [`crate::PostgresServer`])
//! share: finding a binary, whether a missing one may be skipped, free ports, and
//! bounded waits on child processes.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Whether a missing service must fail the test rather than skip it: `$CI` or the
/// service's own variable (`MODELWAY_REQUIRE_REDIS`, `MODELWAY_REQUIRE_POSTGRES`) set to
/// anything but empty, `0` or `false`.
pub(crate) fn required(var: &str) -> bool {
    ["CI", var]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

/// `name` in a directory of `$PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A port nothing listens on right now (the OS's pick for port 0).
pub(crate) fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Waits for `child` to exit, at most `within`; kills it past that. `what` names it in
/// the error.
pub(crate) fn wait_exit(child: &mut Child, within: Duration, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A service's binary was not found (`what` says how it was looked for): a panic when
/// `require_var` (or `$CI`) makes a skip a failure, else a skip line straight to stderr
/// (past the test harness's capture, so it is seen). Always `None` when it returns.
pub(crate) fn missing<T>(
    service: &str,
    what: &str,
    require_var: &str,
    install: &str,
    locate_var: &str,
) -> Option<T> {
    if required(require_var) {
        panic!(
            "{what}, and CI or {require_var} is set so {service} tests may not be skipped: \
             install it (e.g. `{install}`) or set {locate_var}"
        );
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {service} not installed ({what}; set {locate_var})"
    );
    None
}
