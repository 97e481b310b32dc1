//! Who causes a change, and the request facts every event records about it.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use domain::metadata::{Actor, EventMetadata};

/// The principal behind a use case and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Caller {
    /// KeyGuard itself (the CLI, background jobs).
    pub fn system(component: &str) -> Self {
        Self { actor: Actor::system(component), ip: None, user_agent: None, request_id: None }
    }

    pub fn metadata(&self, at: DateTime<Utc>) -> HashMap<String, String> {
        let mut metadata = EventMetadata::new(self.actor.clone(), at);
        metadata.ip = self.ip;
        metadata.user_agent = self.user_agent.clone();
        metadata.request_id = self.request_id.clone();
        metadata.to_map()
    }
}
