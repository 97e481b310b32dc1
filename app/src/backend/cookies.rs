//! The session cookies, set by the REST API's login and by the dashboard's sign-in alike:
//! HttpOnly (scripts never see a token), SameSite=Strict, and Secure unless served on loopback.

use secrecy::ExposeSecret as _;
use services::auth::{ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL, TokenPair};

pub const ACCESS_COOKIE: &str = "kg_access";
pub const REFRESH_COOKIE: &str = "kg_refresh";

/// `Set-Cookie` values for a new session.
pub fn session(tokens: &TokenPair, secure: bool) -> [String; 2] {
    [
        http_only(ACCESS_COOKIE, tokens.access.token.expose_secret(), ACCESS_TOKEN_TTL.num_seconds(), secure),
        http_only(
            REFRESH_COOKIE,
            tokens.refresh.token.expose_secret(),
            REFRESH_TOKEN_TTL.num_seconds(),
            secure,
        ),
    ]
}

/// `Set-Cookie` values that end the session in the browser.
pub fn cleared(secure: bool) -> [String; 2] {
    [http_only(ACCESS_COOKIE, "", 0, secure), http_only(REFRESH_COOKIE, "", 0, secure)]
}

fn http_only(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// The value of cookie `name` in `Cookie` header values.
pub fn read<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<String> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_among_several_headers() {
        let headers = ["a=1; kg_access=tok", "kg_refresh=ref"];
        assert_eq!(read(headers, ACCESS_COOKIE).as_deref(), Some("tok"));
        assert_eq!(read(headers, REFRESH_COOKIE).as_deref(), Some("ref"));
        assert_eq!(read(["kg_access="], ACCESS_COOKIE), None);
        assert_eq!(read(["kg_accessx=1"], ACCESS_COOKIE), None);
    }

    #[test]
    fn cleared_cookies_expire_now_and_stay_http_only() {
        for cookie in cleared(true) {
            assert!(cookie.contains("Max-Age=0; HttpOnly; SameSite=Strict; Secure"), "{cookie}");
        }
    }
}
