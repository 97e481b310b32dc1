//! The command line of the `keyguard` binary. With no subcommand it serves, which is how
//! cargo-leptos runs it.

use clap::{Args, Parser, Subcommand};

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
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the read models the projections keep.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Manage the master key that wraps every data key.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Prove the event history was not modified.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (the first admin, typically). The password is read from standard input:
    /// one line, or a prompt without echo on a terminal.
    Create(CreateUserArgs),
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The email the user signs in with.
    #[arg(long)]
    pub email: String,
    /// `admin`, `operator` or `auditor`.
    #[arg(long)]
    pub role: String,
    /// The name shown in the dashboard (default: the part of the email before `@`).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild every read model from the event store.
    Rebuild,
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Re-wrap every data key under the current master key (KEYGUARD_MASTER_KEY), unwrapping
    /// with the previous ones (KEYGUARD_PREVIOUS_MASTER_KEYS).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every event's hash chain and compare the store with the latest signed
    /// checkpoint. Exits 0 only when everything holds, 1 when something does not.
    Verify(VerifyArgs),
    /// Verify the history and record a signed checkpoint of every chain's head.
    Checkpoint,
    /// Print the Ed25519 public key that checkpoints are signed with (PEM).
    PublicKey,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as JSON (the shape of `GET /api/v1/audit/verify`).
    #[arg(long)]
    pub json: bool,
}
