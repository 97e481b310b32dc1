//! One module per page of the dashboard.

pub mod home;
pub mod not_found;
