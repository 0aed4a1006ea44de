//! `bench-run`: the orchestrator `cargo xtask bench` calls after building everything
//! (see `modelway_bench::run` and `bench-run --help`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match modelway_bench::run::parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    match modelway_bench::run::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            modelway_bench::run::kill_all();
            eprintln!("bench-run: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
