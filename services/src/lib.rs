//! KeyGuard's application services: the one place each use case is implemented, called by the
//! REST API in `server` and by the dashboard's server functions in `app`.
//!
//! Dependencies point inward: this crate knows the domain and the storage, and nothing about
//! HTTP or Leptos.

pub mod audit;
pub mod audit_query;
pub mod auth;
pub mod backup;
pub mod caller;
pub mod devices;
pub mod enrollment;
pub mod enrollment_codes;
pub mod error;
pub mod events;
pub mod gate;
pub mod history;
pub mod integrity;
pub mod keys;
pub mod login;
pub mod outbox;
pub mod overview;
pub mod platform;
pub mod policies;
pub mod projections;
pub mod read_models;
pub mod secrets;
pub mod store;
pub mod usage;
pub mod users;
