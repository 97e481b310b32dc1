//! Server functions about the KeyGuard server itself.

pub mod status;
