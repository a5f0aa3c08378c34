//! Caller authentication by AWS Signature Version 4, as the AWS CLI and SDKs sign Lambda requests
//! (header form). Pure: no I/O, no clock, no key store of its own. The caller passes the request's
//! parts, the SHA-256 of the body it read, a [`KeyLookup`] over the access keys it knows and the
//! time; [`verify`] answers with the [`Identity`] the key acts as, or an [`AuthError`] shaped as
//! Lambda's (403 `UnrecognizedClientException`, `InvalidSignatureException`...).
//!
//! The steps, in AWS's order: parse the `Authorization` header ([`authorization`]); check the
//! credential scope (service `lambda`, an allowed region); find the key; check `X-Amz-Date`
//! against the clock (5 minutes either way) and the scope's date; check the payload hash
//! (`x-amz-content-sha256`, the body's hash, or `UNSIGNED-PAYLOAD`); rebuild the canonical request
//! and the string to sign ([`canonical`]); compare signatures in constant time ([`signing`]).

pub mod amz_date;
pub mod authorization;
pub mod canonical;
pub mod error;
pub mod signing;

use std::collections::HashMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use authorization::{Authorization, Scope, parse_authorization};
pub use error::AuthError;

/// The service name in the credential scope of every Lambda request.
pub const SERVICE: &str = "lambda";
/// How far `X-Amz-Date` may be from the clock, either way (AWS: 5 minutes).
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;
/// `x-amz-content-sha256` value of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Who a verified request comes from: the Kubernetes identity its access key acts as, for the
/// authorization that follows (RBAC through a SubjectAccessReview).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The access key the request was signed with; none for a bearer token.
    pub access_key_id: Option<String>,
    /// The Kubernetes user name, e.g. `alice` or `system:serviceaccount:team-a:ci`.
    pub username: String,
    pub groups: Vec<String>,
}

/// One access key: its secret and the identity it acts as.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret_access_key: String,
    pub identity: Identity,
}

impl std::fmt::Debug for Credential {
    // Never print the secret, whatever logs a credential by mistake.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("secret_access_key", &"<redacted>")
            .field("identity", &self.identity)
            .finish()
    }
}

/// Where [`verify`] finds a key by its id (the router's watch of key Secrets, a test's map).
pub trait KeyLookup {
    fn lookup(&self, access_key_id: &str) -> Option<Credential>;

    /// The SigV4 signing key of `credential` for `scope` (four HMACs). A store may keep it: it
    /// changes once a day per key and region, as the SDKs that sign keep it too.
    fn signing_key(&self, _access_key_id: &str, credential: &Credential, scope: &Scope) -> Vec<u8> {
        signing::signing_key(
            &credential.secret_access_key,
            &scope.date,
            &scope.region,
            &scope.service,
        )
    }
}

impl KeyLookup for HashMap<String, Credential> {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        self.get(access_key_id).cloned()
    }
}

impl<F: Fn(&str) -> Option<Credential>> KeyLookup for F {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        self(access_key_id)
    }
}

/// What the deployment allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Config {
    /// Regions a credential scope may name; empty allows any (the router's `--region` flags).
    pub regions: Vec<String>,
}

/// Hex SHA-256 of a body, for [`verify`]'s `body_sha256`.
pub fn body_sha256(body: &[u8]) -> String {
    signing::hex(&Sha256::digest(body))
}

/// Verifies a SigV4-signed request. `body_sha256` is the hex SHA-256 of the body as received
/// ([`body_sha256`]); `now` the server's clock.
pub fn verify(
    request: &http::request::Parts,
    body_sha256: &str,
    keys: &impl KeyLookup,
    config: &SigV4Config,
    now: SystemTime,
) -> Result<Identity, AuthError> {
    check_head(request, keys, config, now)?.verify_body(request, body_sha256)
}

/// A request whose `Authorization` header, credential scope, key and date passed: all of
/// [`verify`] that needs no body. The router answers these checks before it reads a payload, so
/// an unknown key or an old date costs no body; the signature follows once the body is in.
pub struct SignedHead {
    auth: Authorization,
    credential: Credential,
    signing_key: Vec<u8>,
    amz_date: String,
    /// `x-amz-content-sha256` as sent, if it was.
    declared_hash: Option<String>,
}

/// The body-free half of [`verify`], in AWS's order.
pub fn check_head(
    request: &http::request::Parts,
    keys: &impl KeyLookup,
    config: &SigV4Config,
    now: SystemTime,
) -> Result<SignedHead, AuthError> {
    let header = request
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingAuthenticationToken)?
        .to_str()
        .map_err(|_| AuthError::IncompleteSignature("Authorization header is not ASCII.".into()))?;
    let auth = parse_authorization(header)?;
    let scope = &auth.scope;
    if scope.service != SERVICE {
        return Err(AuthError::WrongService(scope.service.clone()));
    }
    if !config.regions.is_empty() && !config.regions.contains(&scope.region) {
        return Err(AuthError::WrongRegion(scope.region.clone()));
    }
    let credential = keys
        .lookup(&auth.access_key_id)
        .ok_or(AuthError::UnrecognizedClient)?;

    let amz_date = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::MissingDate)?;
    let signed_at = amz_date::parse(amz_date).ok_or(AuthError::MissingDate)?;
    amz_date::check_skew(signed_at, amz_date::unix_seconds(now), MAX_SKEW_SECONDS)?;
    if !amz_date.starts_with(&scope.date) {
        return Err(AuthError::ScopeDateMismatch {
            scope: scope.date.clone(),
            amz_date: amz_date.to_string(),
        });
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::HostNotSigned);
    }
    let declared_hash = match request.headers.get("x-amz-content-sha256") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AuthError::ContentHashMismatch)?
                .to_string(),
        ),
    };
    let signing_key = keys.signing_key(&auth.access_key_id, &credential, &auth.scope);
    Ok(SignedHead {
        signing_key,
        amz_date: amz_date.to_string(),
        auth,
        credential,
        declared_hash,
    })
}

impl SignedHead {
    /// Whether the signature covers the body, so [`SignedHead::verify_body`] needs its hash
    /// (`UNSIGNED-PAYLOAD` signs none).
    pub fn signs_body(&self) -> bool {
        self.declared_hash.as_deref() != Some(UNSIGNED_PAYLOAD)
    }

    /// The signature check. `body_sha256` is the hex SHA-256 of the body as received; it is not
    /// looked at when the body is unsigned.
    pub fn verify_body(
        self,
        request: &http::request::Parts,
        body_sha256: &str,
    ) -> Result<Identity, AuthError> {
        let payload_hash = match self.declared_hash.as_deref() {
            None => body_sha256.to_string(),
            Some(UNSIGNED_PAYLOAD) => UNSIGNED_PAYLOAD.to_string(),
            // The signature covers the header, not the body: a body that does not hash to the
            // signed value was changed on the way.
            Some(declared) if declared.eq_ignore_ascii_case(body_sha256) => declared.to_string(),
            Some(_) => return Err(AuthError::ContentHashMismatch),
        };
        let scope = &self.auth.scope;
        let canonical_request = canonical::canonical_request(
            request.method.as_str(),
            request.uri.path(),
            request.uri.query().unwrap_or_default(),
            &request.headers,
            &self.auth.signed_headers,
            &payload_hash,
        )
        .ok_or(AuthError::SignatureDoesNotMatch)?;
        let string_to_sign = canonical::string_to_sign(&self.amz_date, scope, &canonical_request);
        if signing::signature_matches(&self.signing_key, &string_to_sign, &self.auth.signature) {
            Ok(self.credential.identity)
        } else {
            Err(AuthError::SignatureDoesNotMatch)
        }
    }
}

#[cfg(test)]
mod fixture_tests;
