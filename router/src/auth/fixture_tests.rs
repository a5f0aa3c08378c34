//! [`super::verify`] against requests the real AWS CLI, boto3 and botocore's signer sent or
//! signed (`router/tests/fixtures/sigv4/`, captured by `capture.py` there with a known key).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Fixture {
    client: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body_base64: String,
}

const FIXTURES: [(&str, &str); 6] = [
    (
        "cli-name",
        include_str!("../../tests/fixtures/sigv4/cli-name.json"),
    ),
    (
        "cli-arn-qualifier",
        include_str!("../../tests/fixtures/sigv4/cli-arn-qualifier.json"),
    ),
    (
        "boto3-partial-arn",
        include_str!("../../tests/fixtures/sigv4/boto3-partial-arn.json"),
    ),
    (
        "boto3-name-alias-empty",
        include_str!("../../tests/fixtures/sigv4/boto3-name-alias-empty.json"),
    ),
    (
        "botocore-unsigned-payload",
        include_str!("../../tests/fixtures/sigv4/botocore-unsigned-payload.json"),
    ),
    (
        "botocore-content-sha256",
        include_str!("../../tests/fixtures/sigv4/botocore-content-sha256.json"),
    ),
];

struct Case {
    name: &'static str,
    fixture: Fixture,
    parts: http::request::Parts,
    body: Vec<u8>,
    /// When it was signed (its `X-Amz-Date`).
    signed_at: SystemTime,
}

fn cases() -> Vec<Case> {
    FIXTURES
        .iter()
        .map(|(name, json)| {
            let fixture: Fixture = serde_json::from_str(json).unwrap();
            let uri = if fixture.query.is_empty() {
                fixture.path.clone()
            } else {
                format!("{}?{}", fixture.path, fixture.query)
            };
            let mut builder = http::Request::builder()
                .method(fixture.method.as_str())
                .uri(uri);
            for (k, v) in &fixture.headers {
                builder = builder.header(k, v);
            }
            let (parts, ()) = builder.body(()).unwrap().into_parts();
            let body = base64::engine::general_purpose::STANDARD
                .decode(&fixture.body_base64)
                .unwrap();
            let amz_date = parts.headers["x-amz-date"].to_str().unwrap();
            let seconds = amz_date::parse(amz_date).unwrap();
            let signed_at = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap());
            Case {
                name,
                fixture,
                parts,
                body,
                signed_at,
            }
        })
        .collect()
}

fn keys(fixture: &Fixture, secret: &str) -> HashMap<String, Credential> {
    HashMap::from([(
        fixture.access_key_id.clone(),
        Credential {
            secret_access_key: secret.to_string(),
            identity: Identity {
                access_key_id: Some(fixture.access_key_id.clone()),
                username: "alice".into(),
                groups: vec!["developers".into()],
            },
        },
    )])
}

fn config() -> SigV4Config {
    SigV4Config {
        regions: vec![
            "us-east-1".into(),
            "eu-west-1".into(),
            "ap-southeast-2".into(),
        ],
    }
}

fn check(case: &Case, body: &[u8], secret: &str, now: SystemTime) -> Result<Identity, AuthError> {
    verify(
        &case.parts,
        &body_sha256(body),
        &keys(&case.fixture, secret),
        &config(),
        now,
    )
}

fn unsigned_payload(case: &Case) -> bool {
    case.parts
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v == UNSIGNED_PAYLOAD)
}

#[test]
fn every_client_kind_and_path_shape_is_covered() {
    let cases = cases();
    let clients: Vec<&str> = cases.iter().map(|c| c.fixture.client.as_str()).collect();
    for client in ["aws-cli", "boto3", "botocore"] {
        assert!(clients.contains(&client), "no fixture from {client}");
    }
    // ARNs (':' sent as %3A, signed double-encoded) and a query string are among them.
    assert!(cases.iter().any(|c| c.fixture.path.contains("%3A")));
    assert!(cases.iter().any(|c| !c.fixture.query.is_empty()));
}

#[test]
fn real_clients_requests_verify() {
    for case in cases() {
        let later = case.signed_at + Duration::from_secs(90);
        let identity = check(&case, &case.body, &case.fixture.secret_access_key, later)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", case.name, case.fixture.client));
        assert_eq!(identity.username, "alice");
        assert_eq!(
            identity.access_key_id.as_deref(),
            Some(case.fixture.access_key_id.as_str())
        );
        assert!(case.fixture.region.len() > 3);
    }
}

#[test]
fn a_changed_body_is_refused_unless_the_payload_is_unsigned() {
    for case in cases() {
        let mut body = case.body.clone();
        body.extend_from_slice(b" ");
        let outcome = check(
            &case,
            &body,
            &case.fixture.secret_access_key,
            case.signed_at,
        );
        if unsigned_payload(&case) {
            // UNSIGNED-PAYLOAD is the client's choice not to sign the body (TLS protects it).
            assert!(outcome.is_ok(), "{}: {outcome:?}", case.name);
            continue;
        }
        let error = outcome.unwrap_err();
        assert_eq!(error.status(), 403);
        assert_eq!(
            error.error_type(),
            "InvalidSignatureException",
            "{}",
            case.name
        );
        assert!(
            matches!(
                error,
                AuthError::SignatureDoesNotMatch | AuthError::ContentHashMismatch
            ),
            "{}: {error:?}",
            case.name
        );
    }
}

#[test]
fn a_wrong_secret_is_an_invalid_signature_with_awss_message() {
    for case in cases() {
        let error = check(&case, &case.body, "not-the-secret", case.signed_at).unwrap_err();
        assert_eq!(error, AuthError::SignatureDoesNotMatch, "{}", case.name);
        assert_eq!(error.status(), 403);
        assert_eq!(error.error_type(), "InvalidSignatureException");
        assert_eq!(
            error.message(),
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
        );
    }
}

#[test]
fn an_unknown_key_is_an_unrecognized_client() {
    for case in cases() {
        let nobody: HashMap<String, Credential> = HashMap::new();
        let error = verify(
            &case.parts,
            &body_sha256(&case.body),
            &nobody,
            &config(),
            case.signed_at,
        )
        .unwrap_err();
        assert_eq!(error.status(), 403);
        assert_eq!(error.error_type(), "UnrecognizedClientException");
        assert_eq!(
            error.message(),
            "The security token included in the request is invalid."
        );
    }
}

#[test]
fn a_ten_minute_old_signature_has_expired() {
    for case in cases() {
        let now = case.signed_at + Duration::from_secs(600);
        let error = check(&case, &case.body, &case.fixture.secret_access_key, now).unwrap_err();
        assert_eq!(error.status(), 403);
        assert_eq!(error.error_type(), "InvalidSignatureException");
        let message = error.message();
        assert!(
            message.starts_with("Signature expired: ") && message.ends_with(" - 5 min.)"),
            "{message}"
        );
        // Ten minutes early is refused too.
        let early = case.signed_at - Duration::from_secs(600);
        let error = check(&case, &case.body, &case.fixture.secret_access_key, early).unwrap_err();
        assert!(error.message().starts_with("Signature not yet current: "));
    }
}

#[test]
fn a_changed_path_or_query_is_refused() {
    for case in cases() {
        let path = case.parts.uri.path();
        let query = case.parts.uri.query().unwrap_or_default();
        let changed = [
            format!("{}?{query}", path.replace("hello", "hellp")),
            format!("{path}?{query}&Qualifier=9"),
        ];
        for uri in changed {
            let mut parts = case.parts.clone();
            parts.uri = uri.parse().unwrap();
            let error = verify(
                &parts,
                &body_sha256(&case.body),
                &keys(&case.fixture, &case.fixture.secret_access_key),
                &config(),
                case.signed_at,
            )
            .unwrap_err();
            assert_eq!(
                error,
                AuthError::SignatureDoesNotMatch,
                "{}: {uri}",
                case.name
            );
        }
    }
}

#[test]
fn scope_region_and_missing_header_are_refused() {
    let case = &cases()[0];
    let only_other_region = SigV4Config {
        regions: vec!["eu-central-1".into()],
    };
    let error = verify(
        &case.parts,
        &body_sha256(&case.body),
        &keys(&case.fixture, &case.fixture.secret_access_key),
        &only_other_region,
        case.signed_at,
    )
    .unwrap_err();
    assert_eq!(error, AuthError::WrongRegion("us-east-1".into()));
    assert_eq!(error.error_type(), "InvalidSignatureException");

    let any_region = SigV4Config { regions: vec![] };
    assert!(
        verify(
            &case.parts,
            &body_sha256(&case.body),
            &keys(&case.fixture, &case.fixture.secret_access_key),
            &any_region,
            case.signed_at,
        )
        .is_ok()
    );

    let mut unsigned = case.parts.clone();
    unsigned.headers.remove(http::header::AUTHORIZATION);
    let error = verify(
        &unsigned,
        &body_sha256(&case.body),
        &keys(&case.fixture, &case.fixture.secret_access_key),
        &config(),
        case.signed_at,
    )
    .unwrap_err();
    assert_eq!(error, AuthError::MissingAuthenticationToken);
    assert_eq!(error.status(), 403);
}

#[test]
fn a_credential_never_prints_its_secret() {
    let case = &cases()[0];
    let printed = format!("{:?}", keys(&case.fixture, "s3cr3t-value"));
    assert!(!printed.contains("s3cr3t-value"), "{printed}");
}
