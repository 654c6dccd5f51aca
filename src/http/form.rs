//! `GET /`: the page a loan officer scores an application with. One
//! self-contained HTML file (CSS and JS inline, no CDN, nothing fetched from
//! elsewhere) embedded in the binary. It reads the served version's inputs
//! from `GET /v1/models/{name}` (the select choices, the imputed values),
//! converts what a person types (percentages, dollars with commas) to the
//! API's units, and posts JSON to the same predict endpoint API clients use,
//! so it exercises exactly the served path: the server's own validation
//! messages are shown next to the field they name, and the answer with its
//! reasons in plain words and the version that gave it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::Response;

const PAGE: &str = include_str!("form.html");

/// The page may talk only to this server and load nothing from elsewhere;
/// its own inline style and script are the only ones it runs; no one may
/// frame it.
const POLICY: &str = "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; \
                      script-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self'; \
                      frame-ancestors 'none'";

pub fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    // Revalidated each time, so a new binary's page is picked up at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::FEATURES;

    #[test]
    fn every_feature_has_a_labelled_field_with_help_and_an_error_slot() {
        for name in FEATURES {
            for needle in [
                format!(r#"<label for="{name}">"#),
                format!(r#"id="{name}" name="{name}""#),
                format!(r#"aria-describedby="{name}-help""#),
                format!(r#"<p class="help" id="{name}-help">"#),
                format!(r#"<p class="error" id="{name}-error" hidden></p>"#),
                format!("  {name}: "),
            ] {
                assert!(PAGE.contains(&needle), "the form lacks `{needle}`");
            }
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_posts_json() {
        for external in ["http://", "https://", "<link", "src=", "@import", "url("] {
            assert!(!PAGE.contains(external), "the page references `{external}`");
        }
        assert!(PAGE.contains(r#"headers: { "Content-Type": "application/json" }"#));
        assert!(PAGE.contains(r#"id="result" aria-live="polite""#));
        assert!(PAGE.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
    }

    #[test]
    fn served_as_utf8_html_under_a_policy_that_allows_only_this_server() {
        let response = page();
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'; connect-src 'self';"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
}
