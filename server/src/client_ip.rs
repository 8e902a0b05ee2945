//! Who the client is, for rate limits: the TCP peer, or, behind a reverse proxy, the address the
//! proxy wrote into the one header the operator named (`TRUSTED_CLIENT_IP_HEADER`). A header the
//! operator did not name is never believed: any client can send `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use app::session::ClientIp;
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName},
    middleware::Next,
    response::Response,
};

#[derive(Clone, Debug)]
pub struct ClientIpSource {
    trusted_header: Option<HeaderName>,
}

impl ClientIpSource {
    pub fn new(trusted_header: Option<HeaderName>) -> Self {
        Self { trusted_header }
    }

    /// The client's address: with a trusted header, its last entry (the one our own proxy
    /// appended; earlier entries come from the client and prove nothing); else the peer.
    fn resolve(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        if let Some(name) = &self.trusted_header {
            let from_proxy = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|ip| parse_ip(ip.trim()));
            if from_proxy.is_some() {
                return from_proxy;
            }
        }
        peer.map(|p| p.ip())
    }
}

/// An address as proxies write it: bare, or with a port (`1.2.3.4:5678`, `[::1]:5678`).
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Puts the [`ClientIp`] in the request's extensions for everything behind it.
pub async fn establish(
    State(source): State<ClientIpSource>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(ip) = source.resolve(request.headers(), peer) {
        request.extensions_mut().insert(ClientIp(ip));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const PEER: Option<SocketAddr> = Some(SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
        4000,
    ));

    #[test]
    fn without_a_trusted_header_the_peer_counts() {
        let source = ClientIpSource::new(None);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(source.resolve(&h, PEER), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_trusted_headers_last_entry_counts() {
        let source = ClientIpSource::new(Some(HeaderName::from_static("x-forwarded-for")));
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9")]);
        assert_eq!(
            source.resolve(&h, PEER),
            Some("203.0.113.9".parse().unwrap())
        );
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "[2001:db8::1]:443"),
        ]);
        assert_eq!(
            source.resolve(&h, PEER),
            Some("2001:db8::1".parse().unwrap())
        );
        // Garbage or absent: the peer.
        let h = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(source.resolve(&h, PEER), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            source.resolve(&HeaderMap::new(), PEER),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
