//! What a sender sends to a hook: the method, the request target with any URL key or API
//! key parameter, and the authentication headers, signed as the hook verifies them. Used
//! by `hookgate sign`, `hookgate local` (its printed example) and the load harness.

use std::time::SystemTime;

use crate::hook::Hook;

/// Where a signed request goes and the credentials it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The hook's path, with a URL key segment or an API key query parameter if the scheme
    /// puts one there.
    pub path_and_query: String,
    /// Authentication headers (signature, timestamp, delivery id, basic credentials, API
    /// key), lowercase names.
    pub headers: Vec<(String, String)>,
}

/// The method a sender uses: POST when the hook takes it, else its first method.
pub fn sender_method(hook: &Hook) -> http::Method {
    if hook.allows(&http::Method::POST) {
        http::Method::POST
    } else {
        hook.methods[0].clone()
    }
}

/// What a sender would send to `hook` with `body` at `now`: the request target and the
/// authentication headers. `None` when no secret of the hook is active at `now`.
pub fn signed_request(
    hook: &Hook,
    method: &http::Method,
    body: &[u8],
    now: SystemTime,
) -> Option<Signed> {
    let credentials = hook.auth.sign(method.as_str(), &hook.path, body, now)?;
    let mut path = hook.path.clone();
    if let Some(segment) = &credentials.path_segment {
        path = format!("{path}/{segment}");
    }
    let Some((k, v)) = &credentials.query else {
        return Some(Signed {
            path_and_query: path,
            headers: credentials.headers,
        });
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(k, v)
        .finish();
    path = format!("{path}?{q}");
    // Signatures over {url} cover the path with the query: sign again now that it has one.
    let credentials = hook
        .auth
        .sign(method.as_str(), &path, body, now)
        .unwrap_or(credentials);
    Some(Signed {
        path_and_query: path,
        headers: credentials.headers,
    })
}
