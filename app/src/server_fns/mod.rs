//! Server functions, one per file, grouped by area. They stay thin: the work happens in the same
//! application services the REST API calls.

pub mod system;
