//! Who did what, from where and when: the metadata stored beside every event.
//!
//! cqrs-es keeps event metadata as a flat `HashMap<String, String>`; [`EventMetadata`] is its
//! typed form and the two convert losslessly under the stable keys in [`keys`]. The store will
//! add the hash-chain link (`prev_hash`, `hash`) under reserved keys that this type neither
//! writes nor requires, so a map read back from the store still parses.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;

/// The metadata keys. Part of the stored format: never rename one.
pub mod keys {
    pub const ACTOR_TYPE: &str = "actor_type";
    pub const ACTOR_ID: &str = "actor_id";
    pub const IP: &str = "ip";
    pub const USER_AGENT: &str = "user_agent";
    pub const REQUEST_ID: &str = "request_id";
    pub const AT: &str = "at";
    /// Reserved for the event store's hash chain: the previous event's hash.
    pub const PREV_HASH: &str = "prev_hash";
    /// Reserved for the event store's hash chain: this event's hash.
    pub const HASH: &str = "hash";
}

/// The principal behind a change. Also used as the `by` of commands and events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A dashboard user.
    User { id: Uuid },
    /// An enrolled device acting with its own key (enrollment, key rotation).
    Device { id: Uuid },
    /// KeyGuard itself, e.g. `cli`, `scheduler`, `proxy`.
    System { component: String },
}

impl Actor {
    pub fn system(component: impl Into<String>) -> Self {
        Actor::System { component: component.into() }
    }

    /// The value stored under `actor_type`.
    pub fn actor_type(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Device { .. } => "device",
            Actor::System { .. } => "system",
        }
    }

    /// The value stored under `actor_id`: the UUID, or the component of a system actor.
    pub fn actor_id(&self) -> String {
        match self {
            Actor::User { id } | Actor::Device { id } => id.to_string(),
            Actor::System { component } => component.clone(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor_type(), self.actor_id())
    }
}

/// Why a stored metadata map could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("The event metadata lacks the {key:?} entry.")]
    Missing { key: &'static str },
    #[error("The event metadata entry {key:?} is malformed: {reason}.")]
    Malformed { key: &'static str, reason: String },
}

impl ErrorCode for MetadataError {
    fn code(&self) -> &'static str {
        match self {
            MetadataError::Missing { .. } => "metadata_missing",
            MetadataError::Malformed { .. } => "metadata_malformed",
        }
    }
}

/// The typed metadata of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    pub actor: Actor,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl EventMetadata {
    pub fn new(actor: Actor, at: DateTime<Utc>) -> Self {
        Self { actor, ip: None, user_agent: None, request_id: None, at }
    }

    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The cqrs-es form. Absent optional fields are left out rather than stored empty, so that
    /// "unknown" and "empty" stay distinguishable.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::with_capacity(6);
        map.insert(keys::ACTOR_TYPE.into(), self.actor.actor_type().into());
        map.insert(keys::ACTOR_ID.into(), self.actor.actor_id());
        if let Some(ip) = self.ip {
            map.insert(keys::IP.into(), ip.to_string());
        }
        if let Some(ua) = &self.user_agent {
            map.insert(keys::USER_AGENT.into(), ua.clone());
        }
        if let Some(id) = &self.request_id {
            map.insert(keys::REQUEST_ID.into(), id.clone());
        }
        // Nanosecond precision, so that reading it back yields the same instant.
        map.insert(keys::AT.into(), self.at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        map
    }

    /// Reads the typed form back. Keys it does not know (the hash chain, future additions) are
    /// ignored.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let get = |key: &'static str| map.get(key).map(String::as_str);
        let required = |key: &'static str| get(key).ok_or(MetadataError::Missing { key });
        let malformed = |key: &'static str, reason: String| MetadataError::Malformed { key, reason };

        let actor_id = required(keys::ACTOR_ID)?;
        let uuid = || Uuid::parse_str(actor_id).map_err(|e| malformed(keys::ACTOR_ID, e.to_string()));
        let actor = match required(keys::ACTOR_TYPE)? {
            "user" => Actor::User { id: uuid()? },
            "device" => Actor::Device { id: uuid()? },
            "system" if !actor_id.is_empty() => Actor::system(actor_id),
            "system" => {
                return Err(malformed(keys::ACTOR_ID, "a system actor needs a component".into()));
            }
            other => {
                return Err(malformed(keys::ACTOR_TYPE, format!("unknown actor type {other:?}")));
            }
        };
        let ip = get(keys::IP)
            .map(|s| s.parse::<IpAddr>())
            .transpose()
            .map_err(|e| malformed(keys::IP, e.to_string()))?;
        let at = DateTime::parse_from_rfc3339(required(keys::AT)?)
            .map_err(|e| malformed(keys::AT, e.to_string()))?
            .with_timezone(&Utc);
        Ok(Self {
            actor,
            ip,
            user_agent: get(keys::USER_AGENT).map(str::to_owned),
            request_id: get(keys::REQUEST_ID).map(str::to_owned),
            at,
        })
    }
}

impl From<&EventMetadata> for HashMap<String, String> {
    fn from(m: &EventMetadata) -> Self {
        m.to_map()
    }
}

impl TryFrom<&HashMap<String, String>> for EventMetadata {
    type Error = MetadataError;
    fn try_from(map: &HashMap<String, String>) -> Result<Self, Self::Error> {
        Self::from_map(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + chrono::TimeDelta::nanoseconds(123_456_789)
    }

    #[test]
    fn round_trips_a_full_user_record() {
        let m = EventMetadata::new(Actor::User { id: Uuid::from_u128(7) }, at())
            .with_ip("2001:db8::1".parse().unwrap())
            .with_user_agent("Mozilla/5.0")
            .with_request_id("req-1");
        let map = m.to_map();
        assert_eq!(map[keys::ACTOR_TYPE], "user");
        assert_eq!(map[keys::ACTOR_ID], "00000000-0000-0000-0000-000000000007");
        assert_eq!(map[keys::IP], "2001:db8::1");
        assert_eq!(map[keys::AT], "2026-03-01T12:00:00.123456789Z");
        assert_eq!(EventMetadata::from_map(&map), Ok(m));
    }

    #[test]
    fn round_trips_a_minimal_system_record_and_ignores_the_hash_chain() {
        let m = EventMetadata::new(Actor::system("proxy"), at());
        let mut map = m.to_map();
        assert_eq!(map.len(), 3);
        map.insert(keys::PREV_HASH.into(), "00".repeat(32));
        map.insert(keys::HASH.into(), "11".repeat(32));
        assert_eq!(EventMetadata::from_map(&map), Ok(m));
    }

    #[test]
    fn reports_what_is_missing_or_malformed() {
        let m = EventMetadata::new(Actor::Device { id: Uuid::from_u128(1) }, at());
        let mut map = m.to_map();
        map.remove(keys::AT);
        assert_eq!(EventMetadata::from_map(&map), Err(MetadataError::Missing { key: keys::AT }));
        let mut map = m.to_map();
        map.insert(keys::ACTOR_TYPE.into(), "robot".into());
        assert!(matches!(
            EventMetadata::from_map(&map),
            Err(MetadataError::Malformed { key: keys::ACTOR_TYPE, .. })
        ));
        let mut map = m.to_map();
        map.insert(keys::ACTOR_ID.into(), "not-a-uuid".into());
        assert!(matches!(
            EventMetadata::from_map(&map),
            Err(MetadataError::Malformed { key: keys::ACTOR_ID, .. })
        ));
        let mut map = m.to_map();
        map.insert(keys::IP.into(), "0.0.0.0.0".into());
        assert!(matches!(EventMetadata::from_map(&map), Err(MetadataError::Malformed { key: keys::IP, .. })));
    }

    #[test]
    fn actors_serialize_with_a_type_tag() {
        let json = serde_json::to_value(Actor::system("cli")).unwrap();
        assert_eq!(json, serde_json::json!({"type": "system", "component": "cli"}));
        assert_eq!(Actor::User { id: Uuid::nil() }.to_string(), format!("user:{}", Uuid::nil()));
    }

    proptest! {
        #[test]
        fn any_metadata_round_trips(
            kind in 0u8..3,
            id in any::<u128>(),
            component in "[a-z]{1,12}",
            ip in proptest::option::of(any::<IpAddr>()),
            ua in proptest::option::of(".{0,40}"),
            req in proptest::option::of("[ -~]{0,40}"),
            secs in 0i64..4_102_444_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let actor = match kind {
                0 => Actor::User { id: Uuid::from_u128(id) },
                1 => Actor::Device { id: Uuid::from_u128(id) },
                _ => Actor::system(component),
            };
            let m = EventMetadata {
                actor,
                ip,
                user_agent: ua,
                request_id: req,
                at: DateTime::from_timestamp(secs, nanos).unwrap(),
            };
            prop_assert_eq!(EventMetadata::from_map(&m.to_map()), Ok(m));
        }
    }
}
