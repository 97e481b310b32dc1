//! `keyguard projections rebuild`: throws the read models away and replays the event store.

use anyhow::Context as _;

use super::open_platform;
use crate::cli::ProjectionsCommand;
use crate::config::Config;

pub async fn run(config: &Config, command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Rebuild => {
            let platform = open_platform(config).await?;
            let result = platform.projections.rebuild().await;
            platform.db.close().await;
            let position = result.context("cannot rebuild the read models")?;
            println!("read models rebuilt up to event position {position}");
            Ok(())
        }
    }
}
