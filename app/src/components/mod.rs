//! Reusable pieces of the dashboard.

pub mod language_switch;
