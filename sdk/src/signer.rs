//! Signing a request into the seven kg-v1 headers, exactly as the TypeScript SDK does.
//!
//! The canonical string, the keyId and the header formats are the server's own implementation
//! (`domain::protocol`), so a request this module signs is by construction one the server's
//! parser and verifier read the same way.

use chrono::Utc;
use domain::protocol::{
    CanonicalRequest, KgHeader, Nonce, ProjectKey, Rejection, RequestToSign, SignedHeaders, Timestamp,
};

use crate::{DeviceKey, Error};

/// A device key together with the project key it signs for.
///
/// ```
/// use keyguard_sdk::{DeviceKey, Signer};
///
/// let signer = Signer::new(DeviceKey::generate()?, "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345")?;
/// let signed = signer.sign("POST", "/api/v1/proxy/v1/chat/completions", br#"{"model":"gpt-4o-mini"}"#)?;
/// let headers = signed.header_pairs();
/// assert_eq!(headers.len(), 7);
/// assert_eq!(headers[1], ("x-keyguard-key-id", signer.key().key_id().as_str()));
/// assert_eq!(headers[5], ("x-keyguard-alg", "ECDSA_P256_SHA256_P1363"));
/// assert!(signed.canonical_string().starts_with("kg-v1|"));
/// # Ok::<(), keyguard_sdk::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Signer {
    key: DeviceKey,
    project_key: ProjectKey,
}

impl Signer {
    /// `project_key` is the application's KeyGuard key (`kg_…`), not a provider key.
    pub fn new(key: DeviceKey, project_key: &str) -> Result<Self, Error> {
        let project_key = ProjectKey::parse(project_key).map_err(Error::InvalidProjectKey)?;
        Ok(Self { key, project_key })
    }

    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    pub fn project_key(&self) -> &ProjectKey {
        &self.project_key
    }

    /// Signs a request now, with a fresh random nonce.
    ///
    /// `path_and_query` is the request target exactly as the server will receive it: the full
    /// `/api/v1/...` path and the query string, e.g. `/api/v1/proxy/v1/models?limit=5`.
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<SignedRequest, Error> {
        let timestamp = Timestamp::from_datetime(Utc::now())
            .map_err(|e| Error::InvalidRequest(Rejection::MalformedTimestamp(e)))?;
        let nonce = Nonce::generate().map_err(|_| Error::Entropy)?;
        self.sign_at(timestamp, nonce, method, path_and_query, body)
    }

    /// Signs with a given timestamp and nonce; for reproducing test vectors.
    pub fn sign_at(
        &self,
        timestamp: Timestamp,
        nonce: Nonce,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<SignedRequest, Error> {
        let headers = SignedHeaders::sign(
            self.key.signing_key(),
            RequestToSign {
                project_key: self.project_key.clone(),
                key_id: self.key.key_id().clone(),
                timestamp,
                nonce,
                method,
                path_and_query,
                body,
            },
        )
        .map_err(Error::InvalidRequest)?;
        Ok(SignedRequest { headers, method: method.to_owned(), path_and_query: path_and_query.to_owned() })
    }
}

/// The seven headers of one signed request, with what they were computed over.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    headers: SignedHeaders,
    method: String,
    path_and_query: String,
}

impl SignedRequest {
    /// The parsed headers (the domain's type, so a verifier can use them directly).
    pub fn headers(&self) -> &SignedHeaders {
        &self.headers
    }

    /// `(name, value)` pairs to put on the request, in the protocol's table order. The first is
    /// the project key: do not log them.
    pub fn header_pairs(&self) -> [(&'static str, &str); 7] {
        self.headers.to_pairs()
    }

    /// The value of one header.
    pub fn header(&self, header: KgHeader) -> &str {
        self.headers.value(header)
    }

    /// The exact string that was signed. It contains the project key: do not log it.
    pub fn canonical_string(&self) -> String {
        CanonicalRequest::new(&self.headers, &self.method, &self.path_and_query)
            .expect("validated when signed")
            .render()
    }
}
