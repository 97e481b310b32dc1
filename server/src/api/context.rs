//! Who is asking, from where: the request id, the client's IP and user agent, as every audit
//! record and event's metadata needs them.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use domain::metadata::{Actor, EventMetadata};
use ipnet::IpNet;

use crate::startup::AppState;

/// Facts about the current request that do not depend on authentication.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// The metadata of an event caused by this request.
    pub fn metadata(&self, actor: Actor) -> EventMetadata {
        let mut metadata = EventMetadata::new(actor, chrono::Utc::now())
            .with_ip(self.ip)
            .with_request_id(self.request_id.clone());
        if let Some(agent) = &self.user_agent {
            metadata = metadata.with_user_agent(agent.clone());
        }
        metadata
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let request_id =
            parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|agent| agent.chars().take(512).collect());
        Ok(Self { request_id, ip: client_ip(peer, &parts.headers, &state.trusted_proxies), user_agent })
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries further left
/// were written by the client and prove nothing.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            // Garbage where a proxy should have written an address: trust nothing beyond it.
            Err(_) => break,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(ip("203.0.113.9"), &headers("1.2.3.4"), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("203.0.113.9"), &headers("1.2.3.4"), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_forwards_the_nearest_untrusted_hop() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client wrote 6.6.6.6 itself; the proxy chain appended the real address and its own.
        let forwarded = headers("6.6.6.6, 198.51.100.4, 10.0.0.3");
        assert_eq!(client_ip(ip("10.0.0.2"), &forwarded, &trusted), ip("198.51.100.4"));
        assert_eq!(client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), &headers("::1, 2001:db8::7"), &trusted), ip("2001:db8::7"));
        // A client's junk on the left does not hide the address the proxy appended.
        assert_eq!(client_ip(ip("10.0.0.2"), &headers("junk, 198.51.100.4"), &trusted), ip("198.51.100.4"));
    }
}
