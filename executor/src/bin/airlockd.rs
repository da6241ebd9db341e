//! `airlockd`: the per-worker supervisor. See `airlock_executor::daemon`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = airlock_executor::daemon::Args::parse();
    match airlock_executor::daemon::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("airlockd: {err:#}");
            ExitCode::from(2)
        }
    }
}
