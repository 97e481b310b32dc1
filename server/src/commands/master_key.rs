//! `keyguard master-key rotate`: re-wraps every data key under the current master key, so that
//! the previous keys can then be dropped from the configuration.

use anyhow::{Context as _, bail};
use services::secrets::RewrapReport;

use super::open_platform;
use crate::cli::MasterKeyCommand;
use crate::config::Config;

pub async fn run(config: &Config, command: MasterKeyCommand) -> anyhow::Result<()> {
    match command {
        MasterKeyCommand::Rotate => {
            let platform = open_platform(config).await?;
            let current = platform.envelope.master_keys().current().id();
            let result = platform.envelope.rewrap_all().await;
            // The new key endorses the previous ones while they are still configured, so what they
            // signed stays verifiable after they are dropped; the checkpoint starts its signatures.
            let registered = platform.integrity.register_key().await;
            let checkpoint = platform.integrity.checkpoint().await;
            platform.db.close().await;
            let report = result.context("cannot re-wrap the data keys")?;
            print!("{}", describe(&report, &current.to_string()));
            registered.context("cannot register the new audit signing key")?;
            match checkpoint {
                Ok(c) => {
                    println!("audit checkpoint {} signed with the key of master key {}", c.number, c.key_id)
                }
                Err(err) => println!("no audit checkpoint signed: {err}"),
            }
            if !report.failed.is_empty() {
                bail!(
                    "{} data key(s) could not be re-wrapped; keep the previous master keys configured \
                     and run this again",
                    report.failed.len()
                );
            }
            Ok(())
        }
    }
}

fn describe(report: &RewrapReport, current: &str) -> String {
    let mut text = format!(
        "master key {current}: {} data key(s) re-wrapped, {} already current, {} failed\n",
        report.rewrapped,
        report.already_current,
        report.failed.len()
    );
    for failure in &report.failed {
        text.push_str(&format!(
            "  failed: data key {} version {}: {}\n",
            failure.data_key_id, failure.version, failure.reason
        ));
    }
    text
}
