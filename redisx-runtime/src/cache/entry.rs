//! The options of one cache entry (or one call site), and the checks of its tags.

use std::time::Duration;

use super::CacheMode;
use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};

/// Options of one cache entry (or one call site): ttl, tags, SWR and stale-if-error windows,
/// tiers, codec. Unset fields take the cache's defaults.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::cache::EntryOptions;
/// let opts = EntryOptions::new()
///     .ttl(Duration::from_secs(300))
///     .tags(["users", "user:42"])
///     .swr(Duration::from_secs(30));
/// assert_eq!(opts.tags_value(), ["users", "user:42"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct EntryOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) swr: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) mode: Option<CacheMode>,
    pub(crate) codec: Option<CodecKind>,
    pub(crate) tags: Vec<String>,
}

impl EntryOptions {
    /// Options with every field at the cache's default.
    ///
    /// ```
    /// # use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new();
    /// assert!(opts.tags_value().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the entry is fresh.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long the entry may stay in L1 (never longer than `ttl` or the cache's L1 ttl).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// // Fresh in Redis for 5 minutes, but each instance rereads it after 5 s.
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(300)).l1_ttl(Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Stale-while-revalidate window after the entry stops being fresh.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(60)).swr(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn swr(mut self, window: Duration) -> Self {
        self.swr = Some(window);
        self
    }

    /// Stale-if-error window after the entry expires.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().stale_if_error(Duration::from_secs(3600));
    /// ```
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Which tiers to use.
    ///
    /// ```
    /// # use redisx_runtime::CacheMode;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().mode(CacheMode::L2Only); // large values: Redis only
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The codec of this entry.
    ///
    /// ```
    /// # use redisx_runtime::CodecKind;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().codec(CodecKind::Json);
    /// ```
    #[must_use]
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = Some(codec);
        self
    }

    /// The tags of this entry, for [`Cache::invalidate_tags`](crate::Cache::invalidate_tags).
    ///
    /// ```
    /// # use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new().tags(["users", "user:42"]);
    /// assert_eq!(opts.tags_value(), ["users", "user:42"]);
    /// ```
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// Checks one tag: not empty, at most 128 bytes, no whitespace or control characters.
pub(crate) fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > 128 || tag.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::new(
            ErrorCode::CacheKeyInvalid,
            "a tag must be 1 to 128 bytes without whitespace or control characters",
        )
        .with_context("tag", tag.escape_debug().to_string()));
    }
    Ok(())
}
