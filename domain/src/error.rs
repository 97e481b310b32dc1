//! The stable machine-readable codes that every domain error carries.
//!
//! The API answers `{"error": "<code>", "message": "..."}` and the dashboard translates the code,
//! so a code is part of the public contract: once released it never changes meaning.

/// An error with a stable `snake_case` code, distinct within its enum.
pub trait ErrorCode {
    fn code(&self) -> &'static str;
}
