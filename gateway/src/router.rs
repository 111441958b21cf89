//! Routing: a request path → its hook, and for `url_key` hooks the key segment.
//!
//! Paths are matched exactly after normalization (`/hooks/github/` and `//hooks/github`
//! reach `/hooks/github`). A `url_key` hook at `/hooks/x` serves `/hooks/x/{key}` only.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::normalize_path;
use crate::hook::Hook;

/// The hooks by path.
#[derive(Debug, Default)]
pub struct Router {
    by_path: HashMap<String, Arc<Hook>>,
}

/// A matched route.
#[derive(Debug)]
pub struct Route<'a> {
    pub hook: &'a Arc<Hook>,
    /// The last path segment of a `url_key` hook: the presented key (possibly wrong);
    /// `None` for the hook's own path.
    pub key: Option<&'a str>,
}

impl Router {
    pub fn new(hooks: impl IntoIterator<Item = Arc<Hook>>) -> Router {
        Router {
            by_path: hooks.into_iter().map(|h| (h.path.clone(), h)).collect(),
        }
    }

    pub fn hooks(&self) -> impl Iterator<Item = &Arc<Hook>> {
        self.by_path.values()
    }

    /// Finds the hook for `path`. `None` is a 404.
    pub fn route<'a>(&'a self, path: &'a str) -> Option<Route<'a>> {
        if let Some(r) = self.exact(path) {
            return Some(r);
        }
        // The common case above needs no allocation; odd slashes take this slower path.
        let normalized = normalize_path(path);
        if normalized == path {
            return None;
        }
        if let Some(hook) = self.by_path.get(normalized.as_str()) {
            return Some(Route { hook, key: None });
        }
        let (parent, key) = normalized.rsplit_once('/')?;
        let hook = self.by_path.get(parent)?;
        if !hook.auth.key_in_path() || key.is_empty() {
            return None;
        }
        // The key is sliced from the original path so that it outlives `normalized`.
        let start = path.rfind(key)?;
        Some(Route {
            hook,
            key: Some(&path[start..start + key.len()]),
        })
    }

    fn exact<'a>(&'a self, path: &'a str) -> Option<Route<'a>> {
        if let Some(hook) = self.by_path.get(path) {
            // A url_key hook's own path has no key: the pipeline answers it like a wrong
            // key (and counts it as a missing one).
            return Some(Route { hook, key: None });
        }
        let (parent, key) = path.rsplit_once('/')?;
        let hook = self.by_path.get(parent)?;
        (hook.auth.key_in_path() && !key.is_empty()).then_some(Route {
            hook,
            key: Some(key),
        })
    }
}
