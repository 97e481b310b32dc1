//! The bodies of the `keyguard` subcommands other than `serve`: each opens the configured store
//! (applying migrations first, as `migrate` does), does one job, and says what it did.

pub mod audit;
pub mod audit_backup;
pub mod master_key;
pub mod projections;
pub mod user;

use std::sync::Arc;

use anyhow::Context as _;
use services::platform::Platform;
use services::secrets::MasterKeys;
use services::store::Database;

use crate::config::Config;

/// A command needs few connections: it does one thing at a time.
pub(crate) const CONNECTIONS: u32 = 2;

/// Applies pending database migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = Database::connect(&config.database, 1).await?;
    db.migrate().await?;
    println!("migrations applied ({})", config.database.describe());
    db.close().await;
    Ok(())
}

/// Connects, migrates, loads the master keys and brings the read models up to date, so that a
/// command's checks (such as "is this email taken?") see every committed event.
async fn open_platform(config: &Config) -> anyhow::Result<Platform> {
    let db = Database::connect(&config.database, CONNECTIONS).await?;
    db.migrate().await?;
    let master_keys = MasterKeys::load(&config.master_key).context("cannot load the master key")?;
    let platform = Platform::new(db, Arc::new(master_keys))?;
    platform.projections.catch_up().await.context("cannot bring the read models up to date")?;
    Ok(platform)
}
