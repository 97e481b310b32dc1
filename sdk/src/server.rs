//! The address of a KeyGuard server, and how a route path becomes a request URL.

use std::fmt;

use url::Url;

use crate::Error;

/// The base URL of a KeyGuard server, e.g. `https://keyguard.example.com`, optionally with a
/// path prefix when a reverse proxy publishes it under one (`https://example.com/keyguard`).
///
/// ```
/// use keyguard_sdk::ServerUrl;
///
/// let server = ServerUrl::parse("https://example.com/keyguard/")?;
/// let url = server.url_for("/api/v1/proxy/v1/models?limit=5")?;
/// assert_eq!(url.as_str(), "https://example.com/keyguard/api/v1/proxy/v1/models?limit=5");
/// # Ok::<(), keyguard_sdk::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    /// Accepts an absolute `http` or `https` URL without query, fragment or credentials.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidServerUrl { url: text.to_owned(), reason };
        let mut url = Url::parse(text.trim()).map_err(|_| invalid("not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(invalid("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a server URL has no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("a server URL carries no credentials"));
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(Self(url))
    }

    /// The URL of a route on this server. `path_and_query` starts with `/` and is appended to
    /// the base (its prefix included), e.g. `/api/v1/keyguard/verify-test`.
    pub fn url_for(&self, path_and_query: &str) -> Result<Url, Error> {
        if !path_and_query.starts_with('/') {
            return Err(Error::InvalidRequest(domain::protocol::Rejection::MalformedPath(
                domain::protocol::FieldError::NotOriginForm,
            )));
        }
        let base = self.0.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}")).map_err(|_| Error::InvalidServerUrl {
            url: format!("{base}{path_and_query}"),
            reason: "not a URL",
        })
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joins() {
        let server = ServerUrl::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(server.to_string(), "http://127.0.0.1:3000");
        assert_eq!(
            server.url_for("/api/v1/keyguard/enroll").unwrap().as_str(),
            "http://127.0.0.1:3000/api/v1/keyguard/enroll"
        );
        let prefixed = ServerUrl::parse("https://example.com/kg//").unwrap();
        assert_eq!(prefixed.to_string(), "https://example.com/kg");
        assert_eq!(
            prefixed.url_for("/api/v1/x?a=1").unwrap().as_str(),
            "https://example.com/kg/api/v1/x?a=1"
        );
    }

    #[test]
    fn refuses_what_is_not_a_server_base() {
        for bad in
            ["example.com", "ftp://example.com", "https://example.com/?a=1", "https://u:p@example.com", ""]
        {
            assert!(matches!(ServerUrl::parse(bad), Err(Error::InvalidServerUrl { .. })), "{bad}");
        }
        let server = ServerUrl::parse("https://example.com").unwrap();
        assert!(server.url_for("api/v1").is_err());
    }
}
