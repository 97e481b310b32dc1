//! The `keyguard` binary.

use std::process::ExitCode;

use clap::Parser as _;
use server::cli::{Cli, Command};
use server::commands;
use server::config::Config;
use server::startup::{Application, shutdown_signal};
use server::telemetry;

/// The proxy allocates and frees a request's headers, bodies and events on different threads;
/// glibc's malloc serialises those on its arena locks and keeps what a burst allocated.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("keyguard: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let output = match command {
        Command::Audit(_) => telemetry::LogOutput::Stderr,
        _ => telemetry::LogOutput::Stdout,
    };
    telemetry::init(&config.log_filter, config.log_format, output);
    let result = match command {
        Command::Serve => serve(&config).await,
        Command::Migrate => commands::migrate(&config).await,
        Command::User(command) => commands::user::run(&config, command).await,
        Command::Projections(command) => commands::projections::run(&config, command).await,
        Command::MasterKey(command) => commands::master_key::run(&config, command).await,
        Command::Audit(command) => commands::audit::run(&config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keyguard: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    Application::build(config).await?.run_until(shutdown_signal()).await
}
