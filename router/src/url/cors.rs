//! CORS for function URLs, as Lambda applies a URL's `cors` settings: it answers preflight
//! requests itself, and adds the `Access-Control-*` headers to the function's responses to
//! requests from an allowed origin.

pub use lmi_crds::function_url::Cors;

/// The origin to allow in the answer to a request from `origin`, if any.
fn origin_allowed(cors: &Cors, origin: &str) -> Option<String> {
    if cors.allow_origins.iter().any(|o| o == "*") {
        // With credentials the origin itself must be named, as browsers require.
        return Some(if cors.allow_credentials {
            origin.to_string()
        } else {
            "*".to_string()
        });
    }
    cors.allow_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then(|| origin.to_string())
}

/// Lambda's CORS behaviour over a URL's settings (the settings are the API type's, in
/// `lmi-crds`; what they mean on the wire is the router's).
pub trait CorsPolicy {
    fn preflight(&self, origin: &str, method: &str) -> Option<Vec<(String, String)>>;
    fn response_headers(&self, origin: &str) -> Vec<(String, String)>;
}

impl CorsPolicy for Cors {
    /// The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
    /// its headers when the origin and method are allowed, else `None` (answered without them,
    /// and the browser refuses).
    fn preflight(&self, origin: &str, method: &str) -> Option<Vec<(String, String)>> {
        let allow_origin = origin_allowed(self, origin)?;
        let method_ok = self
            .allow_methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method));
        if !method_ok {
            return None;
        }
        let mut h = vec![
            ("access-control-allow-origin".to_string(), allow_origin),
            (
                "access-control-allow-methods".to_string(),
                self.allow_methods.join(","),
            ),
        ];
        if !self.allow_headers.is_empty() {
            h.push((
                "access-control-allow-headers".to_string(),
                self.allow_headers.join(","),
            ));
        }
        if let Some(age) = self.max_age {
            h.push(("access-control-max-age".to_string(), age.to_string()));
        }
        if self.allow_credentials {
            h.push((
                "access-control-allow-credentials".to_string(),
                "true".to_string(),
            ));
        }
        h.push(("vary".to_string(), "Origin".to_string()));
        Some(h)
    }

    /// The headers added to an ordinary response to a request from `origin`.
    fn response_headers(&self, origin: &str) -> Vec<(String, String)> {
        let Some(allow_origin) = origin_allowed(self, origin) else {
            return Vec::new();
        };
        let mut h = vec![("access-control-allow-origin".to_string(), allow_origin)];
        if !self.expose_headers.is_empty() {
            h.push((
                "access-control-expose-headers".to_string(),
                self.expose_headers.join(","),
            ));
        }
        if self.allow_credentials {
            h.push((
                "access-control-allow-credentials".to_string(),
                "true".to_string(),
            ));
        }
        h.push(("vary".to_string(), "Origin".to_string()));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            max_age: Some(300),
            allow_credentials: true,
        }
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_and_method_is_answered() {
        let h = cors()
            .preflight("https://app.example.com", "POST")
            .expect("allowed");
        assert!(h.contains(&(
            "access-control-allow-origin".into(),
            "https://app.example.com".into()
        )));
        assert!(h.contains(&("access-control-allow-methods".into(), "GET,POST".into())));
        assert!(h.contains(&("access-control-max-age".into(), "300".into())));
        assert!(h.contains(&("access-control-allow-credentials".into(), "true".into())));
        assert_eq!(cors().preflight("https://evil.example.com", "POST"), None);
        assert_eq!(cors().preflight("https://app.example.com", "DELETE"), None);
    }

    #[test]
    fn responses_get_the_headers_only_for_allowed_origins() {
        let h = cors().response_headers("https://app.example.com");
        assert!(h.contains(&(
            "access-control-expose-headers".into(),
            "x-request-id".into()
        )));
        assert!(
            cors()
                .response_headers("https://evil.example.com")
                .is_empty()
        );
        let any = Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            ..Cors::default()
        };
        assert!(
            any.response_headers("https://x.example")
                .contains(&("access-control-allow-origin".into(), "*".into()))
        );
        assert!(any.preflight("https://x.example", "PATCH").is_some());
    }
}
