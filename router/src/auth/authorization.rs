//! The `Authorization` header of SigV4:
//! `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/aws4_request,
//! SignedHeaders=host;x-amz-date, Signature=<64 hex>`.

use super::AuthError;

/// The only algorithm the AWS CLI and SDKs use for Lambda.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every SigV4 credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// `YYYYMMDD/region/service` of a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// `YYYYMMDD/region/service/aws4_request`, as the string to sign has it.
    pub fn to_scope_string(&self) -> String {
        format!(
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lower-case header names, in the order given (the canonical request uses that order).
    pub signed_headers: Vec<String>,
    /// The signature as sent (hex).
    pub signature: String,
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::IncompleteSignature(message.into())
}

/// Parses the header; every way it can be malformed is an `IncompleteSignatureException` whose
/// message says what is wrong, as AWS's do.
pub fn parse_authorization(header: &str) -> Result<Authorization, AuthError> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Use '{ALGORITHM}'."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(incomplete(format!(
                "'{pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            // AWS ignores parameters it does not know.
            _ => continue,
        };
        *slot = Some(value.trim());
    }
    let missing: Vec<String> = [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing.join(" ")));
    };
    let (access_key_id, scope) = parse_credential(credential)?;
    let signed_headers: Vec<String> = signed_headers
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(incomplete(format!(
            "SignedHeaders '{}' has an empty header name.",
            signed_headers.join(";")
        )));
    }
    Ok(Authorization {
        access_key_id,
        scope,
        signed_headers,
        signature: signature.to_string(),
    })
}

/// `AKID/YYYYMMDD/region/service/aws4_request`. The key id may not contain '/', so the scope is
/// the last four parts.
fn parse_credential(credential: &str) -> Result<(String, Scope), AuthError> {
    let parts: Vec<&str> = credential.rsplitn(5, '/').collect();
    let [terminator, service, region, date, access_key_id] = parts.as_slice() else {
        return Err(incomplete(format!(
            "Credential '{credential}' is not of the form ACCESS_KEY_ID/YYYYMMDD/region/service/aws4_request."
        )));
    };
    if *terminator != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
        )));
    }
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(incomplete(format!(
            "Credential '{credential}' has an empty access key id, region or service."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid date (YYYYMMDD), not '{date}'."
        )));
    }
    Ok((
        access_key_id.to_string(),
        Scope {
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REAL: &str = "AWS4-HMAC-SHA256 Credential=AKIALMIFIXTURE000001/20261201/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=971baaf391cd06f73058154db5cbbc36e69c30986cb59fce22a46358f52bcc91";

    #[test]
    fn the_clis_header_parses() {
        let a = parse_authorization(REAL).unwrap();
        assert_eq!(a.access_key_id, "AKIALMIFIXTURE000001");
        assert_eq!(
            a.scope,
            Scope {
                date: "20261201".into(),
                region: "us-east-1".into(),
                service: "lambda".into()
            }
        );
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(a.signature.len(), 64);
        assert_eq!(
            a.scope.to_scope_string(),
            "20261201/us-east-1/lambda/aws4_request"
        );
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let message = |h: &str| parse_authorization(h).unwrap_err().message();
        assert!(message("AWS4-HMAC-SHA1 Credential=a").contains("Unsupported AWS 'algorithm'"));
        assert_eq!(
            message("AWS4-HMAC-SHA256 "),
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."
        );
        assert!(message("AWS4-HMAC-SHA256 Credential").contains("missing equal-sign"));
        assert!(
            message("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/lambda/aws5_request, SignedHeaders=host, Signature=00")
                .contains("valid terminator")
        );
        assert!(
            message("AWS4-HMAC-SHA256 Credential=A/2026120/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00")
                .contains("valid date")
        );
        assert!(
            message("AWS4-HMAC-SHA256 Credential=20261201/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00")
                .contains("not of the form")
        );
        assert!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=A/20261201/us-east-1/lambda/aws4_request, SignedHeaders=host;;x, Signature=00").is_err()
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9-]{1,20}"
    }

    proptest! {
        /// Any well-formed header parses back to its parts, with or without spaces after commas.
        #[test]
        fn well_formed_headers_round_trip(
            akid in "[A-Z0-9]{16,32}",
            date in "[0-9]{8}",
            region in token(),
            service in token(),
            headers in proptest::collection::vec("[a-z][a-z0-9-]{0,15}", 1..8),
            signature in "[0-9a-f]{64}",
            separator in prop_oneof![Just(","), Just(", "), Just(" , ")],
        ) {
            let header = format!(
                "AWS4-HMAC-SHA256 Credential={akid}/{date}/{region}/{service}/aws4_request{separator}SignedHeaders={}{separator}Signature={signature}",
                headers.join(";")
            );
            let a = parse_authorization(&header).unwrap();
            prop_assert_eq!(a.access_key_id, akid);
            prop_assert_eq!(a.scope, Scope { date, region, service });
            prop_assert_eq!(a.signed_headers, headers);
            prop_assert_eq!(a.signature, signature);
        }

        /// Whatever arrives, the parser answers (never panics), and only with IncompleteSignature.
        #[test]
        fn arbitrary_headers_never_panic(header in ".{0,300}") {
            if let Err(e) = parse_authorization(&header) {
                prop_assert_eq!(e.error_type(), "IncompleteSignatureException");
            }
        }

        /// Parameters in any order parse alike.
        #[test]
        fn parameter_order_does_not_matter(order in Just(["Credential=AK/20261201/r/lambda/aws4_request", "SignedHeaders=host", "Signature=ab"]).prop_shuffle()) {
            let a = parse_authorization(&format!("AWS4-HMAC-SHA256 {}", order.join(", "))).unwrap();
            prop_assert_eq!(a.access_key_id, "AK");
            prop_assert_eq!(a.signature, "ab");
        }
    }
}
