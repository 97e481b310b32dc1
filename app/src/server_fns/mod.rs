//! Server functions, grouped by area. They stay thin: the work happens in the same application
//! services the REST API calls, and each one names the permission it needs.

pub mod audit;
pub mod auth;
pub mod devices;
pub mod keys;
pub mod overview;
pub mod policies;
pub mod system;
pub mod users;
