//! `hookgate sign`: what a sender would send for a hook — its authentication headers, or a
//! ready `curl` command — so a config can be tried before a provider is pointed at it.

use std::fmt::Write;
use std::time::SystemTime;

use anyhow::Context;

use crate::config::Settings;
use crate::hook::Hook;

/// What to sign.
pub struct Options<'a> {
    pub hook: &'a str,
    pub body: &'a [u8],
    /// Shown as `--data-binary @PATH` in the curl command.
    pub body_path: &'a str,
    /// `Content-Type` to send; by default JSON when the body parses as JSON.
    pub content_type: Option<&'a str>,
    /// Where the gateway is, e.g. `http://127.0.0.1:8080`; default from `server.listen`.
    pub base_url: Option<&'a str>,
    /// Print a curl command instead of the request line and headers.
    pub curl: bool,
}

/// The request a sender would make, as text.
pub fn render(settings: &Settings, o: &Options<'_>, now: SystemTime) -> anyhow::Result<String> {
    let hook = settings
        .hooks
        .iter()
        .find(|h| h.id == o.hook)
        .with_context(|| {
            let ids: Vec<&str> = settings.hooks.iter().map(|h| h.id.as_str()).collect();
            format!("no hook `{}`; the hooks are: {}", o.hook, ids.join(", "))
        })?;
    let method = sender_method(hook);
    let Signed {
        path_and_query: path,
        headers: credential_headers,
    } = signed_request(hook, &method, o.body, now)
        .with_context(|| format!("hook `{}` has no secret active now to sign with", hook.id))?;
    let base = match o.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            settings.server.listen.replace("0.0.0.0", "127.0.0.1")
        ),
    };
    let content_type = o.content_type.map(str::to_string).or_else(|| {
        serde_json::from_slice::<serde::de::IgnoredAny>(o.body)
            .is_ok()
            .then(|| "application/json".to_string())
    });
    let mut headers = credential_headers;
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    let mut out = String::new();
    if o.curl {
        let _ = write!(
            out,
            "curl -si -X {method} {}",
            quote(&format!("{base}{path}"))
        );
        for (k, v) in &headers {
            let _ = write!(out, " -H {}", quote(&format!("{k}: {v}")));
        }
        let _ = writeln!(
            out,
            " --data-binary {}",
            quote(&format!("@{}", o.body_path))
        );
    } else {
        let _ = writeln!(out, "{method} {base}{path}");
        for (k, v) in &headers {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    Ok(out)
}

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

/// Single-quotes `s` for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
