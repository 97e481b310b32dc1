//! One pass over every chain, page by page in primary-key order (aggregate type, id, sequence),
//! holding only the chain being read: recomputes each event's hash and reports the first thing
//! wrong with each chain, and the head (last sequence and hash) each chain ends on.

use serde::Serialize;

use super::canonical::{ChainHash, event_hash};
use super::chain::{stored_hash, stored_prev_hash};
use super::rows::EventRow;
use crate::store::Database;

/// What is wrong with the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The event's content (type, payload, metadata, sequence) no longer matches its hash.
    Modified,
    /// An event is missing: a gap in the sequence, or a head the checkpoint signed is gone.
    Deleted,
    /// An event the store did not write: no hash where every event has one, or not linked to the
    /// event before it.
    Inserted,
    /// An event sits at a sequence its position in the store contradicts (stored after the event
    /// that follows it).
    Reordered,
    /// The checkpoint itself does not hold: bad signature, unknown key, altered heads list.
    Checkpoint,
}

impl ProblemKind {
    /// The name in reports (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// One problem, located as precisely as the evidence allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: ProblemKind,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// The sequence the problem is at (for a deletion, the first missing one).
    pub sequence: Option<i64>,
    /// The store-wide position of the event concerned (for a gap, of the event after it).
    pub position: Option<i64>,
    pub detail: String,
}

impl Problem {
    fn at(kind: ProblemKind, row: &EventRow, sequence: i64, detail: String) -> Self {
        Self {
            kind,
            aggregate_type: Some(row.aggregate_type.clone()),
            aggregate_id: Some(row.aggregate_id.clone()),
            sequence: Some(sequence),
            position: row.global_seq,
            detail,
        }
    }

    /// Orders problems by where they are in the history: earliest position first, unlocated last.
    fn earlier_than(&self, other: &Problem) -> bool {
        match (self.position, other.position) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// The counts of a pass, and the earliest problem found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub events: u64,
    pub chains: u64,
    /// Events stored before the chain existed (no stored hash; their hashes are computed).
    pub unchained: u64,
    /// Problems found: at most one per chain, plus those of the checkpoint.
    pub problems: u64,
    pub first_problem: Option<Problem>,
}

impl Tally {
    pub fn report(&mut self, problem: Problem) {
        self.problems += 1;
        if self.first_problem.as_ref().is_none_or(|first| problem.earlier_than(first)) {
            self.first_problem = Some(problem);
        }
    }
}

/// Where a chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub hash: ChainHash,
}

struct Chain {
    aggregate_type: String,
    aggregate_id: String,
    expected: i64,
    running: ChainHash,
    /// Whether an event with a stored hash has been seen: after one, every event needs one.
    started: bool,
    broken: bool,
    last: (i64, i64),
}

/// A pass over the store, advanced one page at a time with [`Scanner::step`].
pub struct Scanner<'a> {
    db: &'a Database,
    up_to: Option<i64>,
    page: i64,
    legacy_position: i64,
    after: Option<(String, String, i64)>,
    chain: Option<Chain>,
    /// The event read last, waiting for its successor (to see whether they are in order).
    pending: Option<EventRow>,
    /// Heads of the chains that ended since the last step.
    finished: Vec<Head>,
    done: bool,
    pub tally: Tally,
}

impl<'a> Scanner<'a> {
    /// A pass over the events at or below position `up_to` (all of them with `None`), `page`
    /// events per query. Unhashed events above `legacy_position` were not written by the store.
    pub fn new(db: &'a Database, up_to: Option<i64>, page: i64, legacy_position: i64) -> Self {
        Self {
            db,
            up_to,
            page: page.max(1),
            legacy_position,
            after: None,
            chain: None,
            pending: None,
            finished: Vec::new(),
            done: false,
            tally: Tally::default(),
        }
    }

    /// Reads the next page; returns the heads of the chains that ended in it, or `None` once the
    /// whole store has been read.
    pub async fn step(&mut self) -> Result<Option<Vec<Head>>, sqlx::Error> {
        if self.done {
            return Ok(None);
        }
        let after = self.after.as_ref().map(|(t, i, s)| (t.as_str(), i.as_str(), *s));
        let rows = EventRow::read_page(self.db, after, self.up_to, self.page).await?;
        if let Some(last) = rows.last() {
            self.after = Some((last.aggregate_type.clone(), last.aggregate_id.clone(), last.sequence));
        } else {
            self.done = true;
            if let Some(pending) = self.pending.take() {
                self.check(pending, None);
            }
            self.finished.extend(self.chain.take().map(head));
        }
        for row in rows {
            let Some(pending) = self.pending.take() else {
                self.pending = Some(row);
                continue;
            };
            let same_chain =
                pending.aggregate_type == row.aggregate_type && pending.aggregate_id == row.aggregate_id;
            self.check(pending, if same_chain { row.global_seq } else { None });
            self.pending = Some(row);
        }
        Ok(Some(std::mem::take(&mut self.finished)))
    }

    /// Checks one aggregate's events, read by the caller in sequence order: where its chain
    /// ends, or the first problem. `None` for no events.
    pub(crate) fn check_aggregate(&mut self, rows: Vec<EventRow>) -> Option<Result<Head, Problem>> {
        let mut rows = rows.into_iter().peekable();
        while let Some(row) = rows.next() {
            let next = rows.peek().and_then(|r| r.global_seq);
            self.check(row, next);
        }
        let chain = self.chain.take()?;
        Some(match self.tally.first_problem.take() {
            Some(problem) => Err(problem),
            None => Ok(head(chain)),
        })
    }

    /// Checks one event; `next_position` is the position of the next event of the same chain.
    fn check(&mut self, row: EventRow, next_position: Option<i64>) {
        let is_new = self
            .chain
            .as_ref()
            .is_none_or(|c| c.aggregate_type != row.aggregate_type || c.aggregate_id != row.aggregate_id);
        if is_new {
            let finished = self.chain.take();
            self.finished.extend(finished.map(head));
            self.tally.chains += 1;
            self.chain = Some(Chain {
                aggregate_type: row.aggregate_type.clone(),
                aggregate_id: row.aggregate_id.clone(),
                expected: 1,
                running: ChainHash::GENESIS,
                started: false,
                broken: false,
                last: (0, 0),
            });
        }
        self.tally.events += 1;
        let legacy_position = self.legacy_position;
        let chain = self.chain.as_mut().expect("set above");
        let position = row.global_seq.unwrap_or_default();
        let parsed = row.values();
        let mut problem = None;
        if row.sequence != chain.expected {
            problem = Some(Problem::at(
                ProblemKind::Deleted,
                &row,
                chain.expected,
                format!(
                    "sequence {} to {} missing: the next stored event is {}",
                    chain.expected,
                    row.sequence - 1,
                    row.sequence
                ),
            ));
        } else if let Some(next) = next_position.filter(|next| *next < position) {
            problem = Some(Problem::at(
                ProblemKind::Reordered,
                &row,
                row.sequence,
                format!(
                    "stored at position {position}, after the next event of its aggregate (position {next}): \
                     events were moved between sequences"
                ),
            ));
        }
        let (hash, stored) = match &parsed {
            Ok((payload, metadata)) => {
                (event_hash(chain.running, &row.content(payload, metadata)), stored_hash(metadata))
            }
            Err(_) => (ChainHash::GENESIS, None),
        };
        if problem.is_none() {
            problem = match &parsed {
                Err(reason) => Some(Problem::at(ProblemKind::Modified, &row, row.sequence, reason.clone())),
                Ok((payload, metadata)) => match stored {
                    None if chain.started => Some(Problem::at(
                        ProblemKind::Inserted,
                        &row,
                        row.sequence,
                        "has no hash although the events before it have one: it was not written by the store"
                            .to_owned(),
                    )),
                    None if row.global_seq.is_none_or(|p| p > legacy_position) => Some(Problem::at(
                        ProblemKind::Inserted,
                        &row,
                        row.sequence,
                        format!(
                            "has no hash although it was stored after the chain began (position \
                             {legacy_position}): it was not written by the store"
                        ),
                    )),
                    None => {
                        self.tally.unchained += 1;
                        None
                    }
                    Some(stored) => {
                        let claimed_prev = stored_prev_hash(metadata);
                        let own = claimed_prev.map(|prev| event_hash(prev, &row.content(payload, metadata)));
                        let problem = if claimed_prev != Some(chain.running) {
                            if !chain.started && row.sequence > 1 {
                                Some(Problem::at(
                                    ProblemKind::Modified,
                                    &row,
                                    row.sequence,
                                    "the unchained events before it (stored before the chain existed) were \
                                     changed: their hash no longer leads to this event's prev_hash"
                                        .to_owned(),
                                ))
                            } else {
                                Some(Problem::at(
                                    ProblemKind::Inserted,
                                    &row,
                                    row.sequence,
                                    "its prev_hash is not the hash of the event before it: it was put there \
                                     by something other than the store"
                                        .to_owned(),
                                ))
                            }
                        } else if own != Some(stored) {
                            Some(Problem::at(
                                ProblemKind::Modified,
                                &row,
                                row.sequence,
                                "its content no longer matches its hash".to_owned(),
                            ))
                        } else {
                            None
                        };
                        chain.started = true;
                        problem
                    }
                },
            };
        }
        if let Some(problem) = problem
            && !chain.broken
        {
            chain.broken = true;
            self.tally.report(problem);
        }
        // Carry on from what is stored, so that one bad event is reported once, not again for
        // every event after it.
        chain.running = stored.unwrap_or(hash);
        chain.expected = row.sequence + 1;
        chain.last = (row.sequence, position);
    }
}

fn head(chain: Chain) -> Head {
    Head {
        aggregate_type: chain.aggregate_type,
        aggregate_id: chain.aggregate_id,
        sequence: chain.last.0,
        position: chain.last.1,
        hash: chain.running,
    }
}
