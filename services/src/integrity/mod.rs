//! Tamper evidence for the event history.
//!
//! - **Chain** (`chain`, `canonical`): every event's metadata carries `prev_hash` and `hash`, the
//!   SHA-256 of the previous event's hash and a canonical encoding of this event. One chain per
//!   aggregate (the previous event is the one at `sequence - 1`); audit records and usage batches
//!   are aggregates written in one go, so each batch is one chain. Hashes are computed where
//!   every event passes: the event repository's persist path and `Database::append_batch`.
//! - **Checkpoints** (`checkpoint`): the heads of all chains, signed with an Ed25519 key derived
//!   from the master key, periodically and on demand.
//! - **Verification** ([`Integrity::verify`]): recomputes every chain page by page and compares
//!   the result with the latest checkpoint, which is what catches a removed tail or aggregate.
//!
//! Events stored before the chain existed have no hash. Their hashes are computed, never stored:
//! verification counts them as `unchained`, chains the next event onto them, and the checkpoint
//! signs their heads like any other, so they are covered from the first checkpoint on. An unhashed
//! event stored after the chain began (above `event_chain.legacy_position`) is reported as
//! inserted.

pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod retention;
mod rows;
pub mod scan;
pub mod signing;

use std::sync::Arc;

use serde::Serialize;

pub use canonical::ChainHash;
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointStatus};
pub use scan::{Problem, ProblemKind};
pub use signing::{CheckpointKeys, PublicKey};

use crate::secrets::MasterKeys;
use crate::store::Database;

/// Events read per query: enough to keep round trips few, few enough to keep memory flat.
const PAGE: i64 = 500;

/// The outcome of [`Integrity::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True only when every chain holds and the latest checkpoint (if any) matches the store.
    pub ok: bool,
    pub events: u64,
    pub chains: u64,
    /// Events stored before the chain existed, covered only through their successors and the
    /// checkpoints.
    pub unchained: u64,
    pub problems: u64,
    /// The earliest problem by position in the store (problems the checkpoint alone reveals,
    /// without a position, come last).
    pub first_problem: Option<Problem>,
    /// The latest checkpoint and how it compares; `None` when none was recorded yet (then a
    /// removed tail cannot be detected).
    pub checkpoint: Option<CheckpointStatus>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the event history: {0}")]
pub struct VerifyError(#[from] sqlx::Error);

/// The history's tamper evidence: verification and checkpoints. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Integrity {
    db: Database,
    keys: Arc<CheckpointKeys>,
    page: i64,
}

impl Integrity {
    pub fn new(db: Database, master_keys: &MasterKeys) -> Self {
        Self { db, keys: Arc::new(CheckpointKeys::new(master_keys)), page: PAGE }
    }

    /// The same, reading `page` events per query (tests use small pages to cross page borders).
    pub fn with_page(mut self, page: i64) -> Self {
        self.page = page.max(1);
        self
    }

    /// The checkpoint verifying key, for auditors.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// Registers the current signing key (endorsing the older keys the configured ones trust),
    /// so that what they signed stays verifiable once they are dropped from the configuration.
    pub async fn register_key(&self) -> Result<(), sqlx::Error> {
        self.keys.register(&self.db).await
    }

    /// Applies the retention policy for usage events: removes every usage batch stored before
    /// `now - days`, in runs of at most [`retention::BATCHES_PER_RUN`] batches, each recorded by
    /// a signed `UsageRetentionApplied` event. Returns the runs that removed something (and
    /// those that kept batches which do not verify).
    pub async fn apply_retention(
        &self,
        days: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<retention::RetentionRun>, retention::RetentionError> {
        let legacy_position = checkpoint::legacy_position(&self.db).await?;
        let mut runs = Vec::new();
        let mut after = 0;
        loop {
            let (run, next) =
                retention::run_once(&self.db, &self.keys, days, now, legacy_position, after).await?;
            if run.batches > 0 || !run.kept.is_empty() {
                runs.push(run);
            }
            match next {
                Some(next) => after = next,
                None => return Ok(runs),
            }
        }
    }

    /// Verifies the history up to the current head and records a signed checkpoint of it.
    pub async fn checkpoint(&self) -> Result<Checkpoint, CheckpointError> {
        checkpoint::record(&self.db, &self.keys, self.page).await
    }

    /// Recomputes every chain and compares the store with the latest checkpoint.
    pub async fn verify(&self) -> Result<VerifyReport, VerifyError> {
        let legacy_position = checkpoint::legacy_position(&self.db).await?;
        let mut scanner = scan::Scanner::new(&self.db, None, self.page, legacy_position);
        while scanner.step().await?.is_some() {}
        let mut tally = scanner.tally;
        let trusted = self.keys.trusted(&self.db).await?;
        retention::verify(&self.db, &trusted, &mut |p| tally.report(p)).await?;
        let checkpoint = match checkpoint::latest(&self.db).await? {
            None => None,
            Some(latest) => Some(
                checkpoint::compare(&self.db, &self.keys, latest, legacy_position, self.page, &mut |p| {
                    tally.report(p)
                })
                .await?,
            ),
        };
        Ok(VerifyReport {
            ok: tally.problems == 0,
            events: tally.events,
            chains: tally.chains,
            unchained: tally.unchained,
            problems: tally.problems,
            first_problem: tally.first_problem,
            checkpoint,
        })
    }
}
