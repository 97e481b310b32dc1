//! Reports that the server answers, and which version it runs.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
}

#[server(endpoint = "system/status")]
pub async fn get_server_status() -> Result<ServerStatus, ServerFnError> {
    Ok(ServerStatus { version: env!("CARGO_PKG_VERSION").to_owned() })
}
