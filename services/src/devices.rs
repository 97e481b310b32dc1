//! Devices: the operator's side of a device's life (approve, suspend, reactivate, rename,
//! revoke), the filtered list with counts by status, and a device's full history.
//!
//! Every change may name the version of the device the operator saw (`expected_version`, the
//! number of events in its history). The command then only applies to exactly that version, so
//! that two operators acting on the same screen cannot both win: one approving while another
//! revokes gets one success and one `concurrent_modification`, whatever the timing. Without an
//! expected version the command applies to whatever the device is now, if the domain allows it.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository as _, PersistedEventStore};
use cqrs_es::{Aggregate as _, AggregateError, EventStore as _};
use domain::device::{Device, DeviceCommand};
use domain::metadata::EventMetadata;
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::Page;
use crate::read_models::devices::{self, DeviceFilter, DeviceView, StatusCounts};
use crate::store::EventRepository;

/// A device and the version of its history the view reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedDevice {
    pub device: DeviceView,
    /// How many events the device's history holds; pass it back as `expected_version`.
    pub version: u64,
}

/// A page of devices and how many devices are in each state across all keys.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceList {
    pub page: Page<DeviceView>,
    pub counts: StatusCounts,
}

/// One event of a device's history, with who caused it and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceHistoryEntry {
    /// 1 for the enrollment, then one more per event.
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub at: DateTime<Utc>,
    /// `user:<uuid>`, `device:<uuid>` or `system:<component>`.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The event as stored (device events hold no secrets: the key is a public key).
    pub payload: serde_json::Value,
}

pub async fn list(platform: &Platform, filter: &DeviceFilter) -> Result<DeviceList, ServiceError> {
    let page = devices::list(&platform.db, filter).await?;
    let counts = devices::counts_by_status(&platform.db).await?;
    Ok(DeviceList { page, counts })
}

pub async fn get(platform: &Platform, id: Uuid) -> Result<VersionedDevice, ServiceError> {
    let device = require(platform, id).await?;
    let version = load_store(platform).load_aggregate(&id.to_string()).await.map_err(store_error)?;
    Ok(VersionedDevice { device, version: version.current_sequence as u64 })
}

pub async fn approve(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    expected_version: Option<u64>,
) -> Result<VersionedDevice, ServiceError> {
    let command = DeviceCommand::Approve { by: caller.actor.clone(), at: Utc::now() };
    change(platform, caller, id, expected_version, command).await
}

pub async fn suspend(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    reason: String,
    expected_version: Option<u64>,
) -> Result<VersionedDevice, ServiceError> {
    let command = DeviceCommand::Suspend { by: caller.actor.clone(), reason, at: Utc::now() };
    change(platform, caller, id, expected_version, command).await
}

pub async fn reactivate(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    expected_version: Option<u64>,
) -> Result<VersionedDevice, ServiceError> {
    let command = DeviceCommand::Reactivate { by: caller.actor.clone(), at: Utc::now() };
    change(platform, caller, id, expected_version, command).await
}

pub async fn rename(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    label: String,
    expected_version: Option<u64>,
) -> Result<VersionedDevice, ServiceError> {
    let command = DeviceCommand::Rename { by: caller.actor.clone(), label, at: Utc::now() };
    change(platform, caller, id, expected_version, command).await
}

pub async fn revoke(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    reason: String,
    expected_version: Option<u64>,
) -> Result<VersionedDevice, ServiceError> {
    let command = DeviceCommand::Revoke { by: caller.actor.clone(), reason, at: Utc::now() };
    change(platform, caller, id, expected_version, command).await
}

/// The device's whole history from the event store, oldest first.
pub async fn history(platform: &Platform, id: Uuid) -> Result<Vec<DeviceHistoryEntry>, ServiceError> {
    let events = platform
        .db
        .event_repository()
        .get_events::<Device>(&id.to_string())
        .await
        .map_err(|e| ServiceError::Internal(format!("reading the history of device {id}: {e}")))?;
    if events.is_empty() {
        return Err(device_not_found(id));
    }
    events
        .into_iter()
        .map(|event| {
            let map = serde_json::from_value(event.metadata).map_err(|e| {
                ServiceError::Internal(format!("device {id} event {}: metadata: {e}", event.sequence))
            })?;
            let metadata = EventMetadata::from_map(&map).map_err(|e| {
                ServiceError::Internal(format!("device {id} event {}: metadata: {e}", event.sequence))
            })?;
            Ok(DeviceHistoryEntry {
                sequence: event.sequence as u64,
                event_type: event.event_type,
                event_version: event.event_version,
                at: metadata.at,
                actor: metadata.actor.to_string(),
                ip: metadata.ip.map(|ip| ip.to_string()),
                user_agent: metadata.user_agent,
                request_id: metadata.request_id,
                payload: event.payload,
            })
        })
        .collect()
}

/// Runs one command on the device, at `expected_version` when given, then catches the read
/// models up so that the answer shows the change.
///
/// With a version, this is what `CqrsFramework::execute` does, plus the version check between
/// loading and deciding. The check cannot race: the commit writes event `version + 1`, which the store's
/// unique (aggregate, sequence) key lets only one writer do.
async fn change(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    expected_version: Option<u64>,
    command: DeviceCommand,
) -> Result<VersionedDevice, ServiceError> {
    let Some(expected_version) = expected_version else {
        platform.execute(&platform.devices, &id.to_string(), command, caller).await.map_err(name_field)?;
        return get(platform, id).await;
    };
    let store = load_store(platform);
    let mut context = store.load_aggregate(&id.to_string()).await.map_err(store_error)?;
    if context.current_sequence as u64 != expected_version {
        // A device that does not exist has no version to match: say so rather than "reload".
        require(platform, id).await?;
        return Err(ServiceError::Concurrent);
    }
    let loaded = context.current_sequence as u64;
    let sink = EventSink::default();
    context
        .aggregate
        .handle(command, &(), &sink)
        .await
        .map_err(|e| name_field(ServiceError::from(AggregateError::UserError(e))))?;
    let events = sink.collect().await;
    let committed = store.commit(events, context, caller.metadata(Utc::now())).await.map_err(store_error)?;
    platform.caught_up(Device::TYPE, &id.to_string()).await?;
    let version = committed.last().map_or(loaded, |e| e.sequence as u64);
    Ok(VersionedDevice { device: require(platform, id).await?, version })
}

fn load_store(platform: &Platform) -> PersistedEventStore<EventRepository, Device> {
    PersistedEventStore::new_event_store(platform.db.event_repository())
}

fn store_error(err: AggregateError<domain::device::DeviceError>) -> ServiceError {
    name_field(ServiceError::from(err))
}

/// Names the request field a domain validation error is about.
fn name_field(err: ServiceError) -> ServiceError {
    match err {
        ServiceError::Refused { code, message } => {
            let field = match code {
                "invalid_reason" => "reason",
                "invalid_label" => "label",
                _ => return ServiceError::Refused { code, message },
            };
            ServiceError::Invalid { field, code, message }
        }
        other => other,
    }
}

fn device_not_found(id: Uuid) -> ServiceError {
    ServiceError::not_found("device_not_found", format!("there is no device {id}"))
}

async fn require(platform: &Platform, id: Uuid) -> Result<DeviceView, ServiceError> {
    devices::get(&platform.db, id).await?.ok_or_else(|| device_not_found(id))
}
