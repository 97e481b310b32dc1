//! The command line of the `keyguard` binary. With no subcommand it serves, which is how
//! cargo-leptos runs it.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "keyguard",
    version,
    about = "Signed access to LLM providers: provider keys stay on the server."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the signed proxy and the dashboard (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
}
