//! The `keyguard-device` command; everything it does is in `keyguard_sdk::cli`.

use std::process::ExitCode;

use clap::Parser as _;
use keyguard_sdk::cli::{Cli, execute};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints help, version and usage errors itself, with the right exit codes.
    let cli = Cli::parse();
    match execute(cli, std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyguard-device: {error:#}");
            ExitCode::FAILURE
        }
    }
}
