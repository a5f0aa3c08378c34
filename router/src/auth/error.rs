//! Why a request is not authenticated, with the status, `x-amzn-ErrorType` and message Lambda
//! gives for it. Plain data, like `crate::lambda_error::LambdaError`: the router turns it into a
//! response.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    MissingAuthenticationToken,
    /// The header is not a SigV4 header AWS would accept (the message says what is missing).
    IncompleteSignature(String),
    /// The credential scope names another service than `lambda`.
    WrongService(String),
    /// The credential scope names a region this deployment does not serve.
    WrongRegion(String),
    /// No such access key.
    UnrecognizedClient,
    /// No (parsable) `X-Amz-Date` header.
    MissingDate,
    /// `X-Amz-Date` more than 5 minutes before the clock. Times as `YYYYMMDDTHHMMSSZ`.
    Expired {
        signed: String,
        now: String,
        limit: String,
    },
    /// `X-Amz-Date` more than 5 minutes after the clock.
    NotYetCurrent {
        signed: String,
        now: String,
        limit: String,
    },
    /// The credential scope's date is not the day of `X-Amz-Date`.
    ScopeDateMismatch { scope: String, amz_date: String },
    /// `host` is not among the signed headers.
    HostNotSigned,
    /// `x-amz-content-sha256` is not the body's hash.
    ContentHashMismatch,
    /// The signature is not the one the key gives.
    SignatureDoesNotMatch,
}

/// Lambda's message for a signature that does not match.
pub const SIGNATURE_DOES_NOT_MATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
/// Lambda's message for an unknown access key.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

impl AuthError {
    /// Every authentication failure is 403, as in Lambda.
    pub fn status(&self) -> u16 {
        403
    }

    /// The value of `x-amzn-ErrorType` (the exception the SDKs raise).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) | Self::MissingDate | Self::HostNotSigned => {
                "IncompleteSignatureException"
            }
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::WrongService(_)
            | Self::WrongRegion(_)
            | Self::Expired { .. }
            | Self::NotYetCurrent { .. }
            | Self::ScopeDateMismatch { .. }
            | Self::ContentHashMismatch
            | Self::SignatureDoesNotMatch => "InvalidSignatureException",
        }
    }

    /// The message, worded as AWS words it.
    pub fn message(&self) -> String {
        match self {
            Self::MissingAuthenticationToken => "Missing Authentication Token".to_string(),
            Self::IncompleteSignature(m) => m.clone(),
            Self::WrongService(s) => {
                format!("Credential should be scoped to correct service: 'lambda', not '{s}'.")
            }
            Self::WrongRegion(r) => {
                format!("Credential should be scoped to a valid region, not '{r}'.")
            }
            Self::UnrecognizedClient => INVALID_TOKEN.to_string(),
            Self::MissingDate => "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".to_string(),
            Self::Expired { signed, now, limit } => {
                format!("Signature expired: {signed} is now earlier than {limit} ({now} - 5 min.)")
            }
            Self::NotYetCurrent { signed, now, limit } => format!(
                "Signature not yet current: {signed} is still later than {limit} ({now} + 5 min.)"
            ),
            Self::ScopeDateMismatch { scope, amz_date } => format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{}', from '{amz_date}'.",
                amz_date.get(..8).unwrap_or(amz_date)
            ),
            Self::HostNotSigned => {
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_string()
            }
            Self::ContentHashMismatch => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .to_string()
            }
            Self::SignatureDoesNotMatch => SIGNATURE_DOES_NOT_MATCH.to_string(),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type(), self.message())
    }
}

impl std::error::Error for AuthError {}
