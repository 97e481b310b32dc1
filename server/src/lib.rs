//! The `keyguard` server: configuration, event store, REST API and the dashboard's server side.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod metrics;
pub mod priority;
pub mod proxy;
pub mod security;
pub mod startup;
pub mod telemetry;
