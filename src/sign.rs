//! `hookgate sign`: what a sender would send for a hook — its authentication headers, or a
//! ready `curl` command — so a config can be tried before a provider is pointed at it.

use std::fmt::Write;
use std::time::SystemTime;

use anyhow::Context;

use hookgate_gateway::config::Settings;
use hookgate_gateway::sender::{sender_method, signed_request, Signed};

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
