//! Errors of the API client.
//!
//! The variants say what a caller can do about a failure: retry it later
//! ([`Error::is_retryable`]), fix its own input (`Status` 4xx, `InvalidUrl`), or report a bug or a
//! change on Jetpay's side (`Decode`). None of them carries the API token.

/// How much of an error body we keep. Enough for a FastAPI `{"detail": …}` with a few validation
/// errors; bounded so a misbehaving server (or a proxy's HTML page) cannot fill the logs.
pub const MAX_ERROR_BODY_BYTES: usize = 2 * 1024;

/// A failed call to Jetpay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Jetpay answered with a status outside 2xx. `body` is what it said, truncated to
    /// [`MAX_ERROR_BODY_BYTES`]; it is for the log only and must never be shown to a customer
    /// (it may echo their input). That is also why `Display` leaves it out: code that turns an
    /// error into text for a person cannot leak it by accident; log with `{:?}` to see it.
    #[error("Jetpay answered HTTP {status}")]
    Status { status: u16, body: String },
    /// No complete answer within the configured timeout (connecting, sending or reading).
    #[error("Jetpay did not answer in time")]
    Timeout,
    /// Could not connect: DNS, refused, TLS handshake.
    #[error("could not connect to Jetpay: {0}")]
    Connect(String),
    /// A 2xx answer whose body is not what the guide says it is.
    #[error("could not decode Jetpay's answer: {0}")]
    Decode(String),
    /// The configured base URL cannot be used to build request URLs.
    #[error("invalid Jetpay URL: {0}")]
    InvalidUrl(String),
    /// Anything else that went wrong while sending the request or reading the answer.
    #[error("request to Jetpay failed: {0}")]
    Request(String),
}

impl Error {
    /// A short label for metrics and logs: which kind of failure, never its detail.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Status { status, .. } if *status >= 500 => "status_5xx",
            Error::Status { .. } => "status_4xx",
            Error::Timeout => "timeout",
            Error::Connect(_) => "connect",
            Error::Decode(_) => "decode",
            Error::InvalidUrl(_) => "invalid_url",
            Error::Request(_) => "request",
        }
    }

    /// Whether the same call may succeed if made again later unchanged: timeouts, failures to
    /// connect, server errors (5xx) and rate limiting (429). A 4xx other than 429 means the
    /// request itself is wrong, and repeating it only repeats the failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout | Error::Connect(_) => true,
            Error::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            Error::Decode(_) | Error::InvalidUrl(_) | Error::Request(_) => false,
        }
    }

    /// The HTTP status, when Jetpay answered with a non-2xx one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Classifies a `reqwest` error. Timeout is checked first because a connect timeout is
    /// both, and a timeout is the more useful thing to say.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Error::Timeout
        } else if err.is_connect() {
            Error::Connect(error_chain(&err))
        } else if err.is_decode() {
            Error::Decode(error_chain(&err))
        } else if err.is_builder() {
            Error::InvalidUrl(error_chain(&err))
        } else {
            Error::Request(error_chain(&err))
        }
    }
}

/// `reqwest`'s top-level message ("error sending request for url …") hides the useful part
/// (e.g. "Connection refused") in its sources; join the whole chain for the log. The URL in it
/// holds no secret: the token travels in a header only.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut so a reader of
/// the log knows the body went on.
pub(crate) fn truncate_body(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated]", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classes() {
        assert!(Error::Timeout.is_retryable());
        assert!(Error::Connect("refused".into()).is_retryable());
        for status in [500, 502, 503, 504, 429] {
            assert!(
                Error::Status {
                    status,
                    body: String::new()
                }
                .is_retryable(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert!(
                !Error::Status {
                    status,
                    body: String::new()
                }
                .is_retryable(),
                "{status}"
            );
        }
        assert!(!Error::Decode("x".into()).is_retryable());
        assert!(!Error::InvalidUrl("x".into()).is_retryable());
        assert!(!Error::Request("x".into()).is_retryable());
    }

    #[test]
    fn status_display_leaves_out_the_body() {
        let e = Error::Status {
            status: 422,
            body: r#"{"detail":"customer@example.com is taken"}"#.into(),
        };
        assert_eq!(e.to_string(), "Jetpay answered HTTP 422");
        assert!(format!("{e:?}").contains("customer@example.com"));
        assert_eq!(e.status(), Some(422));
        assert_eq!(Error::Timeout.status(), None);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_body("short", 10), "short");
        let long = "é".repeat(10); // 2 bytes each
        let cut = truncate_body(&long, 5);
        assert!(cut.starts_with("éé"));
        assert!(cut.ends_with("…[truncated]"));
        assert!(!cut.starts_with("ééé"));
    }
}
