//! Redirects: which statuses are followed and what the next hop sends. The next hop's
//! URL goes through [`Target::from_url`] and later the same resolve-and-check as the
//! first, so a redirect can lead nowhere the first URL could not.
//!
//! Method changes follow the Fetch standard, as browsers and curl do: 303 turns anything
//! but HEAD into a GET without body; 301 and 302 turn a POST into a GET without body;
//! 307 and 308 keep method and body. Credentials (`Authorization`, `Cookie`,
//! `Proxy-Authorization`) are dropped when the origin (scheme, host or port) changes,
//! not only the host, so an `https` → `http` downgrade does not leak them either.

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_LANGUAGE, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LOCATION, CONTENT_TYPE,
    USER_AGENT,
};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::target::Target;
use super::OutboundError;

/// One request on the way: the first, or one a redirect led to.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub method: Method,
    pub target: Target,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Headers describing a body, dropped along with it.
const BODY_HEADERS: [HeaderName; 4] = [
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_LOCATION,
];

/// The only headers that follow a request to another origin (besides those describing a
/// body that is kept). Anything else a flow set may be a credential under a custom name
/// (`x-auth-token`, `x-client-secret`), so it stays with the origin it was meant for.
const CROSS_ORIGIN_HEADERS: [HeaderName; 3] = [ACCEPT, ACCEPT_LANGUAGE, USER_AGENT];

/// Whether a response with this status is a redirect to follow (given a `Location`).
/// 300 (a choice), 304 (not modified) and 305 (use proxy) are not.
pub(crate) fn is_followed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The hop a redirect from `prev` with `status` and `location` leads to.
pub(crate) fn next(
    prev: Hop,
    status: StatusCode,
    location: &HeaderValue,
) -> Result<Hop, OutboundError> {
    let location = location.to_str().map_err(|_| {
        OutboundError::InvalidUrl("redirect Location is not a printable ASCII URL".to_owned())
    })?;
    let url = prev
        .target
        .url
        .join(location)
        .map_err(|e| OutboundError::InvalidUrl(format!("redirect Location: {e}")))?;
    let target = Target::from_url(url).map_err(|e| match e {
        OutboundError::InvalidUrl(m) => OutboundError::InvalidUrl(format!("redirect: {m}")),
        other => other,
    })?;

    let Hop {
        mut method,
        target: from,
        mut headers,
        mut body,
    } = prev;
    let to_get = match status.as_u16() {
        303 => method != Method::HEAD,
        301 | 302 => method == Method::POST,
        _ => false,
    };
    if to_get {
        method = Method::GET;
        body = Bytes::new();
        headers.retain(|(name, _)| !BODY_HEADERS.contains(name));
    }
    if target.origin() != from.origin() {
        headers
            .retain(|(name, _)| CROSS_ORIGIN_HEADERS.contains(name) || BODY_HEADERS.contains(name));
    }
    Ok(Hop {
        method,
        target,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, COOKIE};

    fn hop(method: Method, url: &str) -> Hop {
        Hop {
            method,
            target: Target::parse(url).unwrap(),
            headers: vec![
                (AUTHORIZATION, HeaderValue::from_static("Bearer t")),
                (COOKIE, HeaderValue::from_static("s=1")),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (
                    HeaderName::from_static("x-trace"),
                    HeaderValue::from_static("abc"),
                ),
            ],
            body: Bytes::from_static(b"{}"),
        }
    }

    fn names(h: &Hop) -> Vec<&str> {
        h.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn follow(method: Method, status: u16, from: &str, to: &str) -> Hop {
        next(
            hop(method, from),
            StatusCode::from_u16(status).unwrap(),
            &HeaderValue::from_str(to).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn methods_change_as_in_browsers() {
        let from = "https://a.example/x";
        for (method, status, want, keeps_body) in [
            (Method::POST, 301, Method::GET, false),
            (Method::POST, 302, Method::GET, false),
            (Method::POST, 303, Method::GET, false),
            (Method::PUT, 303, Method::GET, false),
            (Method::HEAD, 303, Method::HEAD, true),
            (Method::PUT, 302, Method::PUT, true),
            (Method::POST, 307, Method::POST, true),
            (Method::POST, 308, Method::POST, true),
        ] {
            let h = follow(method.clone(), status, from, "/y");
            assert_eq!(h.method, want, "{method} {status}");
            assert_eq!(!h.body.is_empty(), keeps_body, "{method} {status}");
            assert_eq!(
                names(&h).contains(&"content-type"),
                keeps_body,
                "{method} {status}"
            );
        }
    }

    #[test]
    fn credentials_stay_within_the_origin() {
        let same = follow(Method::GET, 302, "https://a.example/x", "/y?z=1");
        assert_eq!(same.target.url.as_str(), "https://a.example/y?z=1");
        assert_eq!(
            names(&same),
            ["authorization", "cookie", "content-type", "x-trace"]
        );
        for to in [
            "https://b.example/",
            "http://a.example/",
            "https://a.example:8443/",
        ] {
            let h = follow(Method::GET, 302, "https://a.example/x", to);
            assert_eq!(names(&h), ["content-type"], "{to}");
        }
    }

    #[test]
    fn the_next_url_is_checked_like_the_first() {
        let try_next = |to: &str| {
            next(
                hop(Method::GET, "https://a.example/"),
                StatusCode::FOUND,
                &HeaderValue::from_str(to).unwrap(),
            )
        };
        for bad in [
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/",
            "http://a.example@127.0.0.1/",
            "http://[::1/",
        ] {
            assert!(
                matches!(try_next(bad), Err(OutboundError::InvalidUrl(_))),
                "{bad}"
            );
        }
        let h = try_next("//169.254.169.254/latest").unwrap();
        assert_eq!(h.target.literal, Some("169.254.169.254".parse().unwrap()));
        assert!(!is_followed(StatusCode::NOT_MODIFIED));
        assert!(!is_followed(StatusCode::MULTIPLE_CHOICES));
        assert!(is_followed(StatusCode::PERMANENT_REDIRECT));
    }
}
