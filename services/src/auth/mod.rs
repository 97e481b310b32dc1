//! Dashboard sign-in primitives: password hashing, signed tokens, refresh-token sessions and the
//! login throttle. The HTTP layer (`server::api::auth`) and the dashboard's server functions
//! compose these; nothing here knows about requests or cookies.

mod clock;
mod password;
mod sessions;
mod throttle;
mod tokens;

pub use clock::{Clock, ManualClock, SystemClock};
pub use password::{
    MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, PasswordError, PasswordPolicyError, check_password_policy,
    hash_password, needs_rehash, verify_password, verify_password_or_dummy,
};
pub use sessions::{SessionError, Sessions, TokenPair};
pub use throttle::{LoginThrottle, ThrottleConfig, ThrottleLimits, Throttled, ThrottledKey};
pub use tokens::{
    ACCESS_TOKEN_TTL, AccessClaims, IssuedToken, REFRESH_TOKEN_TTL, RefreshClaims, TokenError, TokenIssuer,
    TokenType,
};
