//! Context keys: values of the current task (a tenant, a locale, a region) that become part of
//! the keys and tags of the calls that ask for them, so that two tenants never share an entry,
//! a lock, a quota or an idempotency record.
//!
//! A [`Context`] is entered for a task with [`Context::scope`] (typically by a middleware, per
//! request). The attributes take `vary_by = ["tenant"]`: the named values of the current
//! context are put in front of the rendered key and of every tag, as one segment
//! `_ctx:tenant=acme:` (names in the order given), before L1, Redis or any other plugin sees
//! them. The service API does the same through [`key`] and [`keys`]. This is the one way keys
//! vary by context, for every plugin:
//!
//! | attribute | what varies |
//! |---|---|
//! | `#[cached]`, `#[cache_put]` | the key and every tag |
//! | `#[cache_evict]` | every key and every tag (it evicts in the current context only) |
//! | `#[with_lock]`, `#[rate_limit]`, `#[idempotent]` | the key |
//!
//! A call whose context lacks a value it varies by does not guess: `#[cached]` runs the body
//! uncached (warned once per call site), `#[cache_put]` and `#[cache_evict]` skip the write or
//! the eviction (warned), and the others fail with [`ErrorCode::ConfigContextInvalid`]
//! without running the body. A key that does not vary but starts with the segment's prefix
//! `_ctx:` (a template such as `"{raw}"` given a forged value) is refused the same way, so a
//! call can only reach a context's entries through that context.
//!
//! Names are 1 to 32 characters of `a-z`, `0-9` and `_`, starting with a letter; values 1 to
//! 64 characters of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`. Neither can hold the segment's `:`,
//! `,` or `=`, so a varied key reads back as exactly one context and one key.
//!
//! ```no_run
//! use redisx_runtime::context::Context;
//!
//! # #[allow(dead_code)]
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let acme = Context::new().with("tenant", "acme")?;
//! acme.scope(async {
//!     // `#[cached(key = "user:{id}", vary_by = ["tenant"])]` stores under
//!     // `_ctx:tenant=acme:user:{id}` here; with the service API:
//!     let key = redisx_runtime::context::key("user:1", &["tenant"])?;
//!     assert_eq!(key, "_ctx:tenant=acme:user:1");
//!     rx.cache().set(&key, &"Ada".to_owned(), None).await
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};

/// The prefix of a context segment.
pub const SEGMENT_PREFIX: &str = "_ctx:";

const MAX_NAME: usize = 32;
const MAX_VALUE: usize = 64;

tokio::task_local! {
    static CURRENT: Context;
}

/// Named values of the current task (see the [module docs](self)). Cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    entries: Arc<[(String, String)]>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// This context with `name` set to `value` (replacing an earlier value of `name`).
    /// Fails with [`ErrorCode::ConfigContextInvalid`] when either is outside its alphabet or
    /// length (see the [module docs](self)).
    ///
    /// ```
    /// use redisx_runtime::context::Context;
    ///
    /// let ctx = Context::new().with("tenant", "acme")?.with("locale", "en-GB")?;
    /// assert_eq!(ctx.get("locale"), Some("en-GB"));
    /// assert!(Context::new().with("tenant", "a:b").is_err());
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn with(self, name: &str, value: &str) -> Result<Self> {
        check_name(name)?;
        if value.is_empty()
            || value.len() > MAX_VALUE
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(format!(
                "the context value of `{name}` must be 1 to {MAX_VALUE} characters of A-Z, a-z, 0-9, `.`, `_` and `-`"
            )));
        }
        let mut entries: Vec<(String, String)> = self
            .entries
            .iter()
            .filter(|(n, _)| n != name)
            .cloned()
            .collect();
        entries.push((name.to_owned(), value.to_owned()));
        Ok(Self {
            entries: entries.into(),
        })
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Runs `fut` with this context as its task's context, merged over the context it is
    /// entered in (a value set here wins). Tasks started inside with [`crate::spawn`] keep it.
    ///
    /// ```no_run
    /// use redisx_runtime::context::Context;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// let tenant = Context::new().with("tenant", "acme")?;
    /// let locale = Context::new().with("locale", "fr")?;
    /// tenant.scope(locale.scope(async {
    ///     let ctx = Context::current().unwrap();
    ///     assert_eq!((ctx.get("tenant"), ctx.get("locale")), (Some("acme"), Some("fr")));
    /// }))
    /// .await;
    /// # Ok(()) }
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        let merged = match Self::current() {
            Some(outer) => {
                let mut entries: Vec<(String, String)> = outer
                    .entries
                    .iter()
                    .filter(|(n, _)| self.get(n).is_none())
                    .cloned()
                    .collect();
                entries.extend(self.entries.iter().cloned());
                Self {
                    entries: entries.into(),
                }
            }
            None => self,
        };
        CURRENT.scope(merged, fut)
    }

    /// The context of the current task, if one was entered.
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// `key` varied by the current context's values of `names` (see the [module docs](self)):
/// `_ctx:tenant=acme:` and `key`. With no names, `key` itself, unless it starts with
/// [`SEGMENT_PREFIX`]. Fails with [`ErrorCode::ConfigContextInvalid`] when a name is not set
/// (or not a valid name) or an unvaried key starts with the prefix.
///
/// ```no_run
/// use redisx_runtime::context::{self, Context};
///
/// # #[allow(dead_code)]
/// # async fn demo() -> redisx_runtime::Result<()> {
/// let ctx = Context::new().with("tenant", "acme")?;
/// let key = ctx.scope(async { context::key("report:7", &["tenant"]) }).await?;
/// assert_eq!(key, "_ctx:tenant=acme:report:7");
/// assert!(context::key("report:7", &["tenant"]).is_err(), "no context here");
/// # Ok(()) }
/// ```
pub fn key(key: &str, names: &[&str]) -> Result<String> {
    if names.is_empty() {
        return unvaried(key).map(str::to_owned);
    }
    let mut out = segment(names)?;
    out.push_str(key);
    Ok(out)
}

/// [`key`] for several keys (or tags) at once: one segment in front of each.
pub fn keys<S: AsRef<str>>(keys: &[S], names: &[&str]) -> Result<Vec<String>> {
    if names.is_empty() {
        return keys
            .iter()
            .map(|k| unvaried(k.as_ref()).map(str::to_owned))
            .collect();
    }
    let seg = segment(names)?;
    Ok(keys
        .iter()
        .map(|k| format!("{seg}{}", k.as_ref()))
        .collect())
}

/// [`key`] in place, for a key an attribute rendered: an unvaried one is checked and kept as
/// it is, a varied one gets the segment in front.
pub(crate) fn vary_rendered_key(mut key: String, names: &[&str]) -> Result<String> {
    if names.is_empty() {
        unvaried(&key)?;
    } else {
        key.insert_str(0, &segment(names)?);
    }
    Ok(key)
}

/// [`keys`] in place, for keys and tags an attribute rendered: unvaried ones are checked and
/// kept as they are, varied ones get the segment in front.
pub(crate) fn vary_rendered(mut rendered: Vec<String>, names: &[&str]) -> Result<Vec<String>> {
    if names.is_empty() {
        for k in &rendered {
            unvaried(k)?;
        }
        return Ok(rendered);
    }
    let seg = segment(names)?;
    for k in &mut rendered {
        k.insert_str(0, &seg);
    }
    Ok(rendered)
}

/// `key`, refused when it starts with [`SEGMENT_PREFIX`] (only a varied call may name a
/// context's keys).
pub(crate) fn unvaried(key: &str) -> Result<&str> {
    if key.starts_with(SEGMENT_PREFIX) {
        return Err(invalid(format!(
            "a key that does not vary by context must not start with `{SEGMENT_PREFIX}`, which names a context's keys"
        ))
        .with_context("key", key.to_owned()));
    }
    Ok(key)
}

/// `_ctx:name=value,name=value:` for the current context's values of `names`.
fn segment(names: &[&str]) -> Result<String> {
    let current = Context::current();
    let mut out = String::from(SEGMENT_PREFIX);
    for (i, name) in names.iter().enumerate() {
        check_name(name)?;
        let value = current.as_ref().and_then(|c| c.get(name)).ok_or_else(|| {
            invalid(format!(
                "the call varies by the context value `{name}`, which this task does not set; enter it with `Context::scope`"
            ))
        })?;
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out.push(':');
    Ok(out)
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{name}` is not a context name: 1 to {MAX_NAME} characters of a-z, 0-9 and `_`, starting with a letter"
        )))
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::ConfigContextInvalid, message)
}

/// The current context, for tasks spawned on the caller's behalf ([`crate::spawn`]).
pub(crate) fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    match Context::current() {
        Some(ctx) => futures_util::future::Either::Left(CURRENT.scope(ctx, fut)),
        None => futures_util::future::Either::Right(fut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_vary_by_the_named_values_in_order() {
        let ctx = Context::new()
            .with("tenant", "acme")
            .unwrap()
            .with("locale", "en-GB")
            .unwrap();
        let (one, two) = ctx
            .scope(async {
                (
                    key("user:1", &["tenant"]).unwrap(),
                    keys(&["a", "b"], &["locale", "tenant"]).unwrap(),
                )
            })
            .await;
        assert_eq!(one, "_ctx:tenant=acme:user:1");
        assert_eq!(
            two,
            [
                "_ctx:locale=en-GB,tenant=acme:a",
                "_ctx:locale=en-GB,tenant=acme:b"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_value_or_a_forged_key_is_refused() {
        let e = key("user:1", &["tenant"]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigContextInvalid);
        assert!(e.message().contains("`tenant`"), "{e}");
        let e = key("_ctx:tenant=acme:user:1", &[]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigContextInvalid);
        assert_eq!(key("user:1", &[]).unwrap(), "user:1");
        for (name, value) in [
            ("Tenant", "a"),
            ("", "a"),
            ("t", ""),
            ("t", "a:b"),
            ("t", "a,b"),
        ] {
            assert!(Context::new().with(name, value).is_err(), "{name}={value}");
        }
    }

    #[tokio::test]
    async fn inner_scopes_override_outer_values() {
        let outer = Context::new().with("tenant", "a").unwrap();
        let inner = Context::new().with("tenant", "b").unwrap();
        let seen = outer
            .scope(async { inner.scope(async { key("k", &["tenant"]).unwrap() }).await })
            .await;
        assert_eq!(seen, "_ctx:tenant=b:k");
    }
}
