//! The command line of the `keyguard` binary. With no subcommand it serves, which is how
//! cargo-leptos runs it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// The audit trail: prove it was not modified, export it, restore it.
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

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Keep this many days of usage events (default: KEYGUARD_USAGE_RETENTION_DAYS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: Option<u32>,
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
    /// Apply the retention policy for usage events now: remove every usage batch stored more
    /// than DAYS days ago, keeping each batch's chain head and recording a signed
    /// `UsageRetentionApplied` event. Security and administration events are never removed.
    Retention(RetentionArgs),
    /// Export every event of the store, exactly as stored, oldest first.
    ///
    /// Each event comes with its aggregate type and id, sequence, type, version, payload,
    /// metadata, global position, id and the time the store accepted it: everything `audit
    /// import` needs to restore it. The events are read in pages, so a store of any size exports
    /// in bounded memory, and from one consistent snapshot.
    ///
    /// The export holds the credential material the events carry: provider secrets SEALED
    /// (encrypted under data keys that the master key wraps) and password HASHES. Nothing is
    /// decrypted; still, keep the file as you would keep the database. A whole NDJSON export
    /// also carries the data keys (wrapped by the master key), the signing keys' registry and
    /// the heads of usage batches removed by retention: restored, the provider secrets open with
    /// the same master key and the history verifies.
    Export(ExportArgs),
    /// Restore an NDJSON export into an EMPTY store, then rebuild the read models.
    ///
    /// Every event is re-appended with its original id, position, sequence, payload, metadata
    /// (hash-chain entries included) and time, in one transaction: the whole export or nothing.
    /// A store that already holds events is refused. Stop every `keyguard` node that uses the
    /// store first.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as JSON (the shape of `GET /api/v1/audit/verify`).
    #[arg(long)]
    pub json: bool,
}

/// The file formats of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON event per line: the format `audit import` restores.
    Ndjson,
    /// One row per event, payload and metadata as JSON text; for reading.
    Csv,
    /// A JSON array of events; for reading.
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
    pub format: ExportFormat,
    /// Only events the store accepted at or after this instant (RFC 3339). A partial export
    /// cannot be restored.
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<DateTime<Utc>>,
    /// Only events the store accepted before this instant (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<DateTime<Utc>>,
    /// Write the export to this file (created only once the export is complete) instead of
    /// standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The NDJSON export to restore (`-` for standard input).
    pub file: PathBuf,
}

fn parse_instant(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{raw}` is not an RFC 3339 instant (e.g. 2025-01-31T12:00:00Z)"))
}
