//! Who is asking: a browser session (cookie, with a CSRF token for its POSTs) or a
//! script's `Authorization` header (a bearer token or basic credentials).
//!
//! Every secret is compared in constant time through SHA-256 digests
//! ([`SecretSet`](hookgate_common::config::SecretSet)); sessions are kept by the digest of
//! their id, so a lookup's timing says nothing of the id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use hookgate_common::config::{Secret, SecretSet};
use sha2::{Digest, Sha256};

use crate::config::{Login, SESSION_TTL};

/// The session cookie's name.
pub const COOKIE: &str = "hookgate_console";
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 1000;

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A browser session, with the CSRF token its forms must carry.
    Session { csrf: String },
    /// An `Authorization` header: no ambient credential, so no CSRF token is needed.
    Header,
}

struct Session {
    csrf: String,
    expires: Instant,
}

/// The login and the open sessions.
pub struct Gate {
    login: Login,
    users: Option<SecretSet>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Gate {
    pub fn new(login: Login) -> Gate {
        let users = login
            .basic
            .as_ref()
            .map(|(u, _)| SecretSet::new(&[Secret::new(u.as_bytes().to_vec(), None)]));
        Gate {
            login,
            users,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a token is the console's.
    pub fn token_ok(&self, token: &str) -> bool {
        let now = SystemTime::now();
        self.login
            .token
            .as_ref()
            .is_some_and(|t| t.matches(token.as_bytes(), now))
    }

    /// Whether basic credentials are the console's (both parts always compared).
    pub fn basic_ok(&self, username: &str, password: &str) -> bool {
        let now = SystemTime::now();
        match (&self.login.basic, &self.users) {
            (Some((_, passwords)), Some(users)) => {
                let user = users.matches(username.as_bytes(), now);
                let pass = passwords.matches(password.as_bytes(), now);
                user & pass
            }
            _ => false,
        }
    }

    /// Who sent a request with these `Authorization` and `Cookie` header values.
    pub fn caller(&self, authorization: Option<&str>, cookie: Option<&str>) -> Option<Caller> {
        if let Some(auth) = authorization {
            let (scheme, value) = auth.split_once(' ')?;
            let ok = if scheme.eq_ignore_ascii_case("bearer") {
                self.token_ok(value.trim())
            } else if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (user, pass) = text.split_once(':')?;
                self.basic_ok(user, pass)
            } else {
                false
            };
            return ok.then_some(Caller::Header);
        }
        let id = cookie_value(cookie?, COOKIE)?;
        let sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.get(&digest(id))?;
        (session.expires > Instant::now()).then(|| Caller::Session {
            csrf: session.csrf.clone(),
        })
    }

    /// Opens a session; returns its id (the cookie's value).
    pub fn open(&self) -> String {
        let id = random_token();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(&id),
            Session {
                csrf: random_token(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    /// Ends the session of this `Cookie` header.
    pub fn close(&self, cookie: Option<&str>) {
        if let Some(id) = cookie.and_then(|c| cookie_value(c, COOKIE)) {
            self.sessions
                .lock()
                .expect("sessions lock")
                .remove(&digest(id));
        }
    }
}

/// Whether a form's CSRF token is the session's, in constant time.
pub fn csrf_ok(expected: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    SecretSet::new(&[Secret::new(expected.as_bytes().to_vec(), None)])
        .matches(presented.as_bytes(), SystemTime::now())
}

/// A cookie's value in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value of a session: not readable by scripts, never sent cross-site.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        let set = |v: &str| SecretSet::new(&[Secret::new(v.as_bytes().to_vec(), None)]);
        Gate::new(Login {
            token: Some(set("t0ken")),
            basic: Some(("ops".into(), set("pa55"))),
        })
    }

    #[test]
    fn tokens_basic_credentials_and_sessions_are_checked() {
        let g = gate();
        assert_eq!(g.caller(Some("Bearer t0ken"), None), Some(Caller::Header));
        assert_eq!(g.caller(Some("Bearer t0ke"), None), None);
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:pa55");
        assert_eq!(
            g.caller(Some(&format!("Basic {basic}")), None),
            Some(Caller::Header)
        );
        let wrong = base64::engine::general_purpose::STANDARD.encode("ops:pa56");
        assert_eq!(g.caller(Some(&format!("Basic {wrong}")), None), None);
        let other = base64::engine::general_purpose::STANDARD.encode("root:pa55");
        assert_eq!(g.caller(Some(&format!("Basic {other}")), None), None);
        assert_eq!(g.caller(None, None), None);

        let id = g.open();
        let cookie = format!("a=b; {COOKIE}={id}");
        let Some(Caller::Session { csrf }) = g.caller(None, Some(&cookie)) else {
            panic!("no session");
        };
        assert!(csrf_ok(&csrf, Some(&csrf)));
        assert!(!csrf_ok(&csrf, Some("nope")));
        assert!(!csrf_ok(&csrf, None));
        assert_eq!(g.caller(None, Some(&format!("{COOKIE}=forged"))), None);
        g.close(Some(&cookie));
        assert_eq!(g.caller(None, Some(&cookie)), None);
    }
}
