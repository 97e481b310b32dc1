//! `keyguard audit verify | checkpoint | public-key`: the event history's tamper evidence from the
//! command line, for auditors and for scheduled jobs (the exit status says whether it holds).
//! `export` and `import` are in [`super::audit_backup`].

use anyhow::{Context as _, bail};
use services::integrity::{CheckpointKeys, Integrity, VerifyReport};
use services::secrets::MasterKeys;
use services::store::Database;

use super::CONNECTIONS;
use crate::cli::AuditCommand;
use crate::config::Config;

pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    if matches!(command, AuditCommand::Export(_) | AuditCommand::Import(_)) {
        return super::audit_backup::run(config, command).await;
    }
    let master_keys = MasterKeys::load(&config.master_key).context("cannot load the master key")?;
    if let AuditCommand::PublicKey = command {
        print!("{}", CheckpointKeys::new(&master_keys).public_key().pem);
        return Ok(());
    }
    let db = Database::connect(&config.database, CONNECTIONS).await?;
    db.migrate().await?;
    let integrity = Integrity::new(db.clone(), &master_keys);
    let result = match command {
        AuditCommand::Verify(args) => verify(&integrity, args.json).await,
        AuditCommand::Checkpoint => checkpoint(&integrity).await,
        AuditCommand::Retention(args) => {
            retention(&integrity, args.days.or(config.usage_retention_days)).await
        }
        AuditCommand::PublicKey | AuditCommand::Export(_) | AuditCommand::Import(_) => {
            unreachable!("answered above")
        }
    };
    db.close().await;
    result
}

async fn verify(integrity: &Integrity, json: bool) -> anyhow::Result<()> {
    let report = integrity.verify().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    if !report.ok {
        bail!("the event history does not verify ({} problem(s))", report.problems);
    }
    Ok(())
}

async fn checkpoint(integrity: &Integrity) -> anyhow::Result<()> {
    let checkpoint = integrity.checkpoint().await?;
    println!(
        "checkpoint {} signed: {} event(s) in {} chain(s) up to position {} (key {})",
        checkpoint.number, checkpoint.events, checkpoint.chains, checkpoint.position, checkpoint.key_id
    );
    Ok(())
}

async fn retention(integrity: &Integrity, days: Option<u32>) -> anyhow::Result<()> {
    let Some(days) = days else {
        bail!("no retention period: pass --days N or set KEYGUARD_USAGE_RETENTION_DAYS");
    };
    let runs = integrity.apply_retention(days, chrono::Utc::now()).await?;
    let (batches, events, requests) =
        runs.iter().fold((0, 0, 0), |(b, e, r), run| (b + run.batches, e + run.events, r + run.requests));
    println!(
        "retention of {days} day(s): removed {events} usage event(s) ({requests} request record(s)) in {batches} \
         batch(es), over {} run(s)",
        runs.iter().filter(|r| r.batches > 0).count()
    );
    let kept: Vec<_> = runs.iter().flat_map(|r| &r.kept).collect();
    for problem in &kept {
        println!("kept (does not verify): {}", problem.detail);
    }
    if !kept.is_empty() {
        bail!(
            "{} usage batch(es) do not verify and were kept as evidence; run `keyguard audit verify`",
            kept.len()
        );
    }
    Ok(())
}

fn describe(report: &VerifyReport) -> String {
    let mut text = format!(
        "{} event(s) in {} chain(s) checked; {} unchained (stored before the chain existed)\n",
        report.events, report.chains, report.unchained
    );
    match &report.checkpoint {
        None => text.push_str(
            "no checkpoint yet: removed tails cannot be detected until `keyguard audit checkpoint` runs\n",
        ),
        Some(status) => text.push_str(&format!(
            "checkpoint {} of {}: {} event(s) up to position {}, signature {}; {} event(s) since\n",
            status.checkpoint.number,
            status.checkpoint.created_at,
            status.checkpoint.events,
            status.checkpoint.position,
            if status.signature_valid { "valid" } else { "INVALID" },
            status.events_after
        )),
    }
    match &report.first_problem {
        None => text.push_str("ok: the history is intact\n"),
        Some(problem) => {
            let at = match (&problem.aggregate_type, &problem.aggregate_id, problem.sequence) {
                (Some(t), Some(id), Some(seq)) => format!("{t} {id} sequence {seq}"),
                _ => "the store".to_owned(),
            };
            let position = problem.position.map(|p| format!(" (position {p})")).unwrap_or_default();
            text.push_str(&format!(
                "FIRST PROBLEM: {} at {at}{position}: {}\n",
                problem.kind.as_str(),
                problem.detail
            ));
        }
    }
    text
}
