//! Everything a use case needs, built once per process: the store, the command side of each
//! aggregate, the projections that keep the read models current, and the secrets envelope.

use std::sync::Arc;

use chrono::Utc;
use cqrs_es::Aggregate;
use domain::ErrorCode;
use domain::api_key::ApiKey;
use domain::device::Device;
use domain::policy::Policy;
use domain::user::User;

use crate::audit::AuditRecorder;
use crate::auth::{LoginThrottle, Sessions, SystemClock, ThrottleConfig, TokenIssuer};
use crate::caller::Caller;
use crate::error::ServiceError;
use crate::events::EventBus;
use crate::gate::{Gate, GateConfig, GateStores};
use crate::integrity::Integrity;
use crate::projections::{Projections, ProjectionsConfig};
use crate::secrets::{Envelope, MasterKeys};
use crate::store::{Cqrs, Database};
use crate::usage::UsageWriter;

pub struct Platform {
    pub db: Database,
    pub projections: Arc<Projections>,
    pub envelope: Envelope,
    pub bus: EventBus,
    pub audit: AuditRecorder,
    pub sessions: Sessions,
    pub throttle: LoginThrottle,
    /// The proxy's gate: verification, policy and limits for signed requests.
    pub gate: Gate,
    /// The proxy's usage records, written in batches once `usage.start` runs.
    pub usage: UsageWriter,
    /// The event history's tamper evidence: verification and signed checkpoints.
    pub integrity: Integrity,
    /// Serializes the first-admin check of the setup page within this process.
    pub(crate) setup_lock: tokio::sync::Mutex<()>,
    pub(crate) devices: Cqrs<Device>,
    pub(crate) api_keys: Cqrs<ApiKey>,
    pub(crate) policies: Cqrs<Policy>,
    pub(crate) users: Cqrs<User>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("db", &self.db.backend()).finish_non_exhaustive()
    }
}

impl Platform {
    /// A single-node platform: the gate keeps nonces and limits in memory.
    pub fn new(db: Database, master_keys: Arc<MasterKeys>) -> Result<Self, ServiceError> {
        Self::with_gate(db, master_keys, GateConfig::default(), GateStores::InMemory)
    }

    /// A platform whose gate uses `config` and keeps nonces and limits in `stores` (shared by a
    /// cluster's nodes, or in memory).
    pub fn with_gate(
        db: Database,
        master_keys: Arc<MasterKeys>,
        config: GateConfig,
        stores: GateStores,
    ) -> Result<Self, ServiceError> {
        let clock = Arc::new(SystemClock);
        let tokens = TokenIssuer::new(&master_keys, clock.clone())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let integrity = Integrity::new(db.clone(), &master_keys);
        let envelope = Envelope::new(db.clone(), master_keys);
        Ok(Self {
            gate: Gate::new(db.clone(), envelope.clone(), config, stores),
            audit: AuditRecorder::new(db.clone()),
            sessions: Sessions::new(db.clone(), Arc::new(tokens)),
            throttle: LoginThrottle::new(ThrottleConfig::default(), clock),
            usage: UsageWriter::new(db.clone()),
            integrity,
            setup_lock: tokio::sync::Mutex::new(()),
            projections: Arc::new(Projections::new(db.clone(), ProjectionsConfig::default())),
            envelope,
            bus: EventBus::default(),
            devices: db.cqrs(vec![], ()),
            api_keys: db.cqrs(vec![], ()),
            policies: db.cqrs(vec![], ()),
            users: db.cqrs(vec![], ()),
            db,
        })
    }

    /// Runs a command on one aggregate with the caller's metadata, then brings the read models
    /// up to date so that the caller reads its own write.
    pub(crate) async fn execute<A>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        command: A::Command,
        caller: &Caller,
    ) -> Result<(), ServiceError>
    where
        A: Aggregate,
        A::Error: ErrorCode,
    {
        cqrs.execute_with_metadata(aggregate_id, command, caller.metadata(Utc::now())).await?;
        self.caught_up(A::TYPE, aggregate_id).await
    }

    /// After a commit: the read models, and this node's gate, reflect it before the caller hears
    /// back. In a cluster another node's projections may apply the event first (they share the
    /// checkpoints), so the gate reloads the aggregate here instead of counting on being told.
    pub(crate) async fn caught_up(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<(), ServiceError> {
        self.projections.catch_up().await?;
        self.gate.reload(aggregate_type, aggregate_id).await;
        Ok(())
    }
}
