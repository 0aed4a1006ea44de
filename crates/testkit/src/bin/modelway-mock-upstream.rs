//! `modelway-mock-upstream [--port N]`: the mock OpenAI-compatible upstream as a process,
//! for black-box tests in other languages. Binds `127.0.0.1:N` (default 0, any free
//! port), prints `listening on http://127.0.0.1:PORT` once bound, and serves until
//! SIGINT or SIGTERM. Scripted through `/__mock/*` (see the crate docs).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use modelway_testkit::MockUpstream;

const USAGE: &str = "usage: modelway-mock-upstream [--port N]";

fn parse_port(mut args: impl Iterator<Item = String>) -> Result<u16, String> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--port" | "-p" => args.next().ok_or("--port needs a value")?,
            other => match other.strip_prefix("--port=") {
                Some(v) => v.to_owned(),
                None => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("--port: not a port number: {value:?}"))?;
    }
    Ok(port)
}

#[tokio::main]
async fn main() -> ExitCode {
    let port = match parse_port(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockUpstream::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("modelway-mock-upstream: cannot bind 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on http://{}", mock.addr())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    shutdown_signal().await;
    drop(mock);
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let parse = |a: &[&str]| parse_port(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(parse(&[]), Ok(0));
        assert_eq!(parse(&["--port", "8080"]), Ok(8080));
        assert_eq!(parse(&["--port=9"]), Ok(9));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }
}
