//! `keyguard audit export` and `keyguard audit import`: the event store as a file and back, the
//! backup and restore path. The work is `services::backup`; this module opens files and reports.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use services::backup::{self, ExportFilter};
use services::projections::{Projections, ProjectionsConfig};
use services::store::Database;

use super::CONNECTIONS;
use crate::cli::{AuditCommand, ExportArgs, ExportFormat};
use crate::config::Config;

pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let db = Database::connect(&config.database, CONNECTIONS).await?;
    db.migrate().await?;
    let result = match command {
        AuditCommand::Export(args) => export(&db, args).await,
        AuditCommand::Import(args) => import(&db, &args.file).await,
        AuditCommand::Verify(_)
        | AuditCommand::Checkpoint
        | AuditCommand::PublicKey
        | AuditCommand::Retention(_) => {
            unreachable!("the integrity commands are in `audit`")
        }
    };
    db.close().await;
    result
}

async fn export(db: &Database, args: ExportArgs) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        anyhow::bail!("--since ({since}) must be before --until ({until})");
    }
    let filter = ExportFilter { since: args.since, until: args.until };
    let format = match args.format {
        ExportFormat::Ndjson => backup::ExportFormat::Ndjson,
        ExportFormat::Csv => backup::ExportFormat::Csv,
        ExportFormat::Json => backup::ExportFormat::Json,
    };
    let page = backup::DEFAULT_PAGE_SIZE;
    let Some(path) = args.output else {
        let mut out = BufWriter::new(std::io::stdout().lock());
        let summary = backup::export(db, filter, format, page, &mut out).await?;
        // Standard output is the export: the report goes to standard error.
        eprintln!("{} event(s) exported, up to position {}", summary.events, summary.last_position);
        return Ok(());
    };
    // Written beside the target and renamed once complete, so that a failed export never
    // leaves a file that looks like a whole backup.
    let partial = partial_path(&path);
    let file = File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let written = async {
        let summary = backup::export(db, filter, format, page, &mut out).await?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, &path)?;
        anyhow::Ok(summary)
    }
    .await;
    let summary = match written {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err.context(format!("cannot export to {}", path.display())));
        }
    };
    println!(
        "{} event(s) exported to {}, up to position {}{}",
        summary.events,
        path.display(),
        summary.last_position,
        match summary.store_records {
            0 => String::new(),
            n => format!(", with {n} data key, signing key and retention record(s)"),
        }
    );
    Ok(())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

async fn import(db: &Database, file: &Path) -> anyhow::Result<()> {
    let summary = if file == Path::new("-") {
        backup::import(db, std::io::stdin().lock()).await
    } else {
        let reader = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        backup::import(db, BufReader::new(reader)).await
    }
    .with_context(|| format!("nothing was restored from {}", file.display()))?;
    println!(
        "{} event(s) and {} other record(s) restored, up to position {}",
        summary.events, summary.store_records, summary.last_position
    );
    std::io::stdout().flush()?;
    let projections = Projections::new(db.clone(), ProjectionsConfig::default());
    let reached = projections
        .rebuild()
        .await
        .context("the events are restored, but the read models could not be rebuilt; run `keyguard projections rebuild`")?;
    println!("read models rebuilt up to event position {reached}");
    Ok(())
}
