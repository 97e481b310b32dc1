//! One module per page of the dashboard.

pub mod audit;
pub mod devices;
pub mod integration;
pub mod keys;
pub mod login;
pub mod not_found;
pub mod overview;
pub mod policies;
pub mod profile;
pub mod setup;
pub mod users;
