//! Who may call an execution environment's sidecar: the names and the derivation of the tokens
//! that the operator gives EE pods and the router sends them, in one place so both agree.
//!
//! - The **invoke key**: 32 random bytes per cluster, in the Secret [`INVOKE_KEY_SECRET`] (field
//!   [`INVOKE_KEY_FIELD`]) of the system namespace. The operator creates it; the router reads it.
//! - A function's **invoke token**: hex HMAC-SHA256(key, `"<namespace>/<function>"`). The operator
//!   writes it into the Secret [`function_secret_name`] of the function's namespace, and the EE's
//!   sidecar gets it from there ([`INVOKE_TOKEN_ENV`]); the router derives it from the key and sends
//!   it on every invocation ([`INVOKE_TOKEN_HEADER`]).
//! - An EE pod's **drain token**: hex HMAC-SHA256(key, `"drain/<namespace>/<pod>"`). It is in the
//!   pod spec (the preStop hook's header [`DRAIN_TOKEN_HEADER`], the sidecar's
//!   [`DRAIN_TOKEN_ENV`]). It is derived from the key rather than from the function's token so
//!   that knowing a function's token (its EEs' own sidecars hold it) does not give the drain
//!   tokens of its other EEs. A namespace or a name holds no `/`, so the two kinds of message
//!   (one `/`, two) never coincide.
//!
//! Pure: no I/O, no randomness (the operator draws the key).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Secret holding the cluster's invoke key, in the system namespace.
pub const INVOKE_KEY_SECRET: &str = "lmi-invoke-key";
/// The key's field in [`INVOKE_KEY_SECRET`].
pub const INVOKE_KEY_FIELD: &str = "key";
/// How many random bytes a new invoke key has.
pub const INVOKE_KEY_BYTES: usize = 32;
/// The field of a function's token Secret ([`function_secret_name`]).
pub const FUNCTION_TOKEN_FIELD: &str = "token";
/// The sidecar's environment variable of the function's invoke token.
pub const INVOKE_TOKEN_ENV: &str = "LMI_INVOKE_TOKEN";
/// The sidecar's environment variable of its pod's drain token.
pub const DRAIN_TOKEN_ENV: &str = "LMI_DRAIN_TOKEN";
/// The header carrying the invoke token on the router -> sidecar hop.
pub const INVOKE_TOKEN_HEADER: &str = "x-lmi-invoke-token";
/// The header carrying the drain token on the preStop hook's `GET /drain`.
pub const DRAIN_TOKEN_HEADER: &str = "x-lmi-drain-token";

/// The Secret (in the function's namespace) holding a function's invoke token.
pub fn function_secret_name(function: &str) -> String {
    format!("lmi-invoke-{function}")
}

/// The cluster's invoke key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct InvokeKey(Vec<u8>);

impl std::fmt::Debug for InvokeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InvokeKey(<{} bytes>)", self.0.len())
    }
}

impl InvokeKey {
    /// A key from the Secret's bytes; none from no bytes (an empty key would protect nothing).
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The invoke token of function `name` in `namespace`.
    pub fn function_token(&self, namespace: &str, name: &str) -> String {
        hex_hmac(&self.0, format!("{namespace}/{name}").as_bytes())
    }

    /// The drain token of EE pod `pod` in `namespace`.
    pub fn drain_token(&self, namespace: &str, pod: &str) -> String {
        hex_hmac(&self.0, format!("drain/{namespace}/{pod}").as_bytes())
    }
}

fn hex_hmac(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` equals `expected`, in a time that does not depend on where they differ (so
/// timing does not reveal a token byte by byte). Only the length may show, and every token has
/// the same length.
pub fn tokens_match(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    let diff = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> InvokeKey {
        InvokeKey::new(vec![7u8; INVOKE_KEY_BYTES]).expect("key")
    }

    #[test]
    fn a_function_token_is_hmac_sha256_of_namespace_and_name_in_hex() {
        // HMAC-SHA256 itself, by RFC 4231's test case 2; a token is that over "<namespace>/<name>".
        let jefe = InvokeKey::new(b"Jefe".to_vec()).expect("key");
        assert_eq!(
            hex_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            jefe.function_token("team", "hello"),
            hex_hmac(b"Jefe", b"team/hello")
        );
        let t = key().function_token("team", "hello");
        assert_eq!(t.len(), 64);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn tokens_differ_by_function_namespace_key_and_pod() {
        let k = key();
        let other = InvokeKey::new(vec![8u8; INVOKE_KEY_BYTES]).expect("key");
        let t = k.function_token("team", "hello");
        assert_eq!(t, k.function_token("team", "hello"), "deterministic");
        assert_ne!(t, k.function_token("team", "hello2"));
        assert_ne!(t, k.function_token("team2", "hello"));
        assert_ne!(t, other.function_token("team", "hello"));
        let d = k.drain_token("team", "hello-v1-ee-0");
        assert_ne!(d, k.drain_token("team", "hello-v1-ee-1"));
        assert_ne!(d, k.drain_token("other", "hello-v1-ee-0"));
        assert_ne!(d, t);
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(tokens_match(b"abcd", b"abcd"));
        assert!(!tokens_match(b"abcd", b"abce"));
        assert!(!tokens_match(b"abcd", b"abc"));
        assert!(!tokens_match(b"abcd", b""));
        assert!(tokens_match(b"", b""));
    }

    #[test]
    fn the_key_is_never_printed_and_never_empty() {
        assert_eq!(format!("{:?}", key()), "InvokeKey(<32 bytes>)");
        assert!(InvokeKey::new(Vec::new()).is_none());
        assert_eq!(function_secret_name("hello"), "lmi-invoke-hello");
    }
}
