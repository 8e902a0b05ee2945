//! Response headers every page gets, and the refusal of cross-origin form posts.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The Content-Security-Policy: only our own scripts and styles, frames only from Jetpay, and
/// nobody may frame us.
pub fn content_security_policy(jetpay_origin: &str, dev_reload: Option<u32>) -> String {
    // cargo-leptos' live reload talks over a websocket on its own port in development.
    let connect = match dev_reload {
        Some(port) => format!("'self' ws://127.0.0.1:{port} ws://localhost:{port}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src {connect}; \
         frame-src {jetpay_origin}; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; \
         object-src 'none'"
    )
}

#[derive(Clone)]
pub struct Headers {
    pub csp: HeaderValue,
}

pub async fn set_headers(
    axum::extract::State(headers): axum::extract::State<Headers>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, headers.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Refuses state-changing requests that a browser marks as coming from another site. Server
/// functions and forms are same-origin; Jetpay's webhook is not a browser and is mounted outside
/// this layer.
pub async fn same_origin_only(request: Request, next: Next) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && is_cross_origin(&request)
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

fn is_cross_origin(request: &Request<Body>) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" || site == "same-site" {
            return true;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Non-browser clients send no Origin; a browser's cross-origin POST always does.
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    origin == "null" || origin_host != host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, site: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method("POST")
            .uri("/api/x")
            .header(header::HOST, "127.0.0.1:3000");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            b = b.header("sec-fetch-site", s);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn cross_origin_detection() {
        assert!(!is_cross_origin(&request(
            Some("http://127.0.0.1:3000"),
            Some("same-origin")
        )));
        assert!(!is_cross_origin(&request(None, None)));
        assert!(is_cross_origin(&request(Some("http://evil.example"), None)));
        assert!(is_cross_origin(&request(Some("null"), None)));
        assert!(is_cross_origin(&request(
            Some("http://127.0.0.1:3000"),
            Some("cross-site")
        )));
    }

    #[test]
    fn csp_limits_frames_to_jetpay() {
        let csp = content_security_policy("http://127.0.0.1:3002", None);
        assert!(csp.contains("frame-src http://127.0.0.1:3002;"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
