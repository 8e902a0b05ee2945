//! Response headers every page gets, and the refusal of cross-origin form posts.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The Content-Security-Policy: only our own scripts (inline ones only with this response's
/// nonce, which Leptos puts on its hydration scripts), styles from us, frames only from Jetpay,
/// and nobody may frame us.
pub fn content_security_policy(
    jetpay_origin: &str,
    dev_reload: Option<u32>,
    nonce: &str,
) -> String {
    // cargo-leptos' live reload talks over a websocket on its own port in development.
    let connect = match dev_reload {
        Some(port) => format!("'self' ws://127.0.0.1:{port} ws://localhost:{port}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src {connect}; \
         frame-src {jetpay_origin}; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; \
         object-src 'none'"
    )
}

/// A fresh nonce per response: 128 random bits, base64url.
fn new_nonce() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the header layer needs to know, fixed at start.
#[derive(Clone)]
pub struct Headers {
    pub jetpay_origin: String,
    pub dev_reload: Option<u32>,
    /// Send HSTS (production, behind TLS).
    pub hsts: bool,
}

const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000; includeSubDomains");

pub async fn set_headers(
    axum::extract::State(headers): axum::extract::State<Headers>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = new_nonce();
    request
        .extensions_mut()
        .insert(app::session::CspNonce(nonce.clone().into()));
    let cacheable = request.uri().path().starts_with("/pkg/");
    let mut response = next.run(request).await;
    let csp = content_security_policy(&headers.jetpay_origin, headers.dev_reload, &nonce);
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if headers.hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    // Account pages and server functions carry personal data: no cache, shared or private, may
    // keep them (a back button after sign-out must not show the cards).
    if !cacheable && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Our origin and, when it is `127.0.0.1` or `localhost`, the other of the two with the same
/// scheme and port: in development a browser opens `localhost` as often as `127.0.0.1`. Used for
/// the origins that may post to us and those that may frame the sandbox's card form. (Not
/// `[::1]`: CSP source expressions cannot name an IPv6 literal, and browsers say so loudly.)
pub fn dev_origins(public_url: &url::Url) -> Vec<String> {
    let mut origins = vec![public_url.origin().ascii_serialization()];
    if !matches!(public_url.host_str(), Some("127.0.0.1" | "localhost")) {
        return origins;
    }
    for host in ["127.0.0.1", "localhost"] {
        let mut alias = public_url.clone();
        if alias.set_host(Some(host)).is_ok() {
            let origin = alias.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    origins
}

/// The origins a browser may post from: the public URL's, and in development the other loopback
/// names of the same port (a developer opens `localhost` as often as `127.0.0.1`).
#[derive(Clone, Debug)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub fn new(public_url: &url::Url, dev: bool) -> Self {
        if dev {
            Self(dev_origins(public_url))
        } else {
            Self(vec![public_url.origin().ascii_serialization()])
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Refuses state-changing requests that a browser marks as coming from another origin. Server
/// functions and forms are same-origin; Jetpay's webhook is not a browser and is mounted outside
/// this layer. `Origin` is compared with our public URL, never with `Host`: a proxy may rewrite
/// `Host`, and a client can forge it.
pub async fn same_origin_only(
    axum::extract::State(allowed): axum::extract::State<AllowedOrigins>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && is_cross_origin(&request, &allowed)
    {
        tracing::warn!(path = %request.uri().path(), "cross-origin request refused");
        return (
            StatusCode::FORBIDDEN,
            "Cross-origin requests are not allowed.",
        )
            .into_response();
    }
    next.run(request).await
}

fn is_cross_origin(request: &Request<Body>, allowed: &AllowedOrigins) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" || site == "same-site" {
            return true;
        }
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        // Non-browser clients send no Origin; a browser's cross-origin POST always does.
        None => false,
        Some(Ok(origin)) => !allowed.allows(origin),
        Some(Err(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, origin: Option<&str>, site: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method("POST")
            .uri("/api/x")
            .header(header::HOST, host);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            b = b.header("sec-fetch-site", s);
        }
        b.body(Body::empty()).unwrap()
    }

    fn allowed(public: &str, dev: bool) -> AllowedOrigins {
        AllowedOrigins::new(&url::Url::parse(public).unwrap(), dev)
    }

    #[test]
    fn cross_origin_detection() {
        let a = allowed("http://127.0.0.1:3000", true);
        let host = "127.0.0.1:3000";
        assert!(!is_cross_origin(
            &request(host, Some("http://127.0.0.1:3000"), Some("same-origin")),
            &a
        ));
        assert!(!is_cross_origin(&request(host, None, None), &a));
        assert!(is_cross_origin(
            &request(host, Some("http://evil.example"), None),
            &a
        ));
        assert!(is_cross_origin(&request(host, Some("null"), None), &a));
        assert!(is_cross_origin(
            &request(host, Some("http://127.0.0.1:3000"), Some("cross-site")),
            &a
        ));
        // Other loopback names of the same port, in development only.
        assert!(!is_cross_origin(
            &request("localhost:3000", Some("http://localhost:3000"), None),
            &a
        ));
        assert!(is_cross_origin(
            &request("localhost:3001", Some("http://localhost:3001"), None),
            &a
        ));
    }

    #[test]
    fn origin_is_compared_with_the_public_url_not_host() {
        let a = allowed("https://cards.example.com", false);
        // Behind a proxy that rewrites Host to the backend's address: still same origin.
        assert!(!is_cross_origin(
            &request("10.0.0.5:3000", Some("https://cards.example.com"), None),
            &a
        ));
        // A forged Host that matches a forged Origin does not pass.
        assert!(is_cross_origin(
            &request("evil.example", Some("https://evil.example"), None),
            &a
        ));
        // No loopback aliases in production.
        assert!(!is_cross_origin(
            &request("127.0.0.1:3000", Some("http://127.0.0.1:3000"), None),
            &allowed("http://127.0.0.1:3000", false)
        ));
        assert!(is_cross_origin(
            &request("localhost:3000", Some("http://localhost:3000"), None),
            &allowed("http://127.0.0.1:3000", false)
        ));
    }

    #[test]
    fn csp_limits_frames_to_jetpay_and_scripts_to_the_nonce() {
        let csp = content_security_policy("http://127.0.0.1:3002", None, "abc");
        assert!(csp.contains("frame-src http://127.0.0.1:3002;"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval';"));
        let script_src = csp.split(';').find(|d| d.contains("script-src")).unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        assert_ne!(new_nonce(), new_nonce());
    }

    #[test]
    fn both_loopback_names_may_frame_the_sandbox_form_and_post() {
        let ancestors = |url: &str| dev_origins(&url::Url::parse(url).unwrap());
        assert_eq!(
            ancestors("http://127.0.0.1:3000"),
            ["http://127.0.0.1:3000", "http://localhost:3000"]
        );
        assert_eq!(
            ancestors("http://localhost:3000/"),
            ["http://localhost:3000", "http://127.0.0.1:3000"]
        );
        assert_eq!(
            ancestors("https://shop.example.com"),
            ["https://shop.example.com"]
        );
    }
}
