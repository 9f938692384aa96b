//! The getters of the cache's config types: `{option}_value()` for each option a user sets.

use std::time::Duration;

use super::{
    CacheConfig, CacheMode, EntryOptions, StaleIfErrorPredicate, StampedeConfig, StampedeFallback,
};
use crate::codec::CodecKind;

impl CacheConfig {
    /// The configured mode.
    pub fn mode_value(&self) -> CacheMode {
        self.mode
    }

    /// The largest number of L1 entries.
    pub fn l1_max_entries_value(&self) -> usize {
        self.l1_max_entries
    }

    /// The L1 weight bound in bytes, when one is set.
    pub fn l1_max_bytes_value(&self) -> Option<u64> {
        self.l1_max_bytes
    }

    /// The longest time an entry stays in L1.
    pub fn l1_ttl_value(&self) -> Duration {
        self.l1_ttl
    }

    /// The ttl of entries whose call site gives none.
    pub fn default_ttl_value(&self) -> Duration {
        self.default_ttl
    }

    /// The largest ttl accepted.
    pub fn max_ttl_value(&self) -> Duration {
        self.max_ttl
    }

    /// The configured key prefix.
    pub fn key_prefix_value(&self) -> &str {
        &self.key_prefix
    }

    /// The codec of stored values.
    pub fn codec_value(&self) -> CodecKind {
        self.codec
    }

    /// The name of the client the cache uses, when it is not the default one.
    pub fn client_value(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The longest user key in bytes.
    pub fn max_key_len_value(&self) -> usize {
        self.max_key_len
    }

    /// The stampede protection settings.
    pub fn stampede_value(&self) -> StampedeConfig {
        self.stampede
    }

    /// The cache-wide stale-while-revalidate window, when it is on.
    pub fn swr_value(&self) -> Option<Duration> {
        self.swr
    }

    /// The cache-wide stale-if-error window, when it is on.
    pub fn stale_if_error_value(&self) -> Option<Duration> {
        self.stale_if_error
    }

    /// The predicate that limits stale-if-error to some errors, when one is set.
    pub fn stale_if_error_when_value(&self) -> Option<&StaleIfErrorPredicate> {
        self.stale_if_error_when.as_ref()
    }

    /// The prefix of tag indexes after the cache prefix.
    pub fn tag_index_prefix_value(&self) -> &str {
        &self.tag_index_prefix
    }

    /// The most tags one entry may carry.
    pub fn max_tags_per_key_value(&self) -> usize {
        self.max_tags_per_key
    }

    /// Whether cross-instance L1 invalidation is on.
    pub fn invalidation_value(&self) -> bool {
        self.invalidation
    }
}

impl StampedeConfig {
    /// Whether stampede protection is on.
    pub fn enabled_value(&self) -> bool {
        self.enabled
    }

    /// How long a regeneration lock lives if its holder dies.
    pub fn lock_ttl_value(&self) -> Duration {
        self.lock_ttl
    }

    /// How long a caller waits for another instance's load.
    pub fn wait_timeout_value(&self) -> Duration {
        self.wait_timeout
    }

    /// What a caller does when the wait times out.
    pub fn fallback_value(&self) -> StampedeFallback {
        self.fallback
    }
}

impl EntryOptions {
    /// The ttl, when set.
    pub fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }

    /// The L1 ttl, when set.
    pub fn l1_ttl_value(&self) -> Option<Duration> {
        self.l1_ttl
    }

    /// The stale-while-revalidate window, when set.
    pub fn swr_value(&self) -> Option<Duration> {
        self.swr
    }

    /// The stale-if-error window, when set.
    pub fn stale_if_error_value(&self) -> Option<Duration> {
        self.stale_if_error
    }

    /// The tiers, when set.
    pub fn mode_value(&self) -> Option<CacheMode> {
        self.mode
    }

    /// The codec, when set.
    pub fn codec_value(&self) -> Option<CodecKind> {
        self.codec
    }

    /// The tags set so far.
    pub fn tags_value(&self) -> &[String] {
        &self.tags
    }
}
