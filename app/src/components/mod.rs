//! Reusable pieces of the dashboard.

pub mod badge;
pub mod charts;
pub mod copy_button;
pub mod dialog;
pub mod error_note;
pub mod field;
pub mod language_switch;
pub mod layout;
pub mod pager;
pub mod theme_switch;
