//! L1: the in-process tier. A bounded `quick_cache` of decoded values, with an expiry per entry.

use std::any::Any;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One decoded value in L1.
#[derive(Clone)]
pub(crate) struct L1Entry {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) expires_at: Instant,
    weight: u32,
}

/// Weighs entries by count (1 each) or by their approximate size in bytes.
#[derive(Clone, Copy)]
pub(crate) struct EntryWeighter {
    by_bytes: bool,
}

impl quick_cache::Weighter<Box<str>, L1Entry> for EntryWeighter {
    fn weight(&self, _key: &Box<str>, val: &L1Entry) -> u64 {
        if self.by_bytes {
            u64::from(val.weight.max(1))
        } else {
            1
        }
    }
}

pub(crate) struct L1 {
    cache: quick_cache::sync::Cache<Box<str>, L1Entry, EntryWeighter>,
}

impl L1 {
    /// An L1 bounded by `max_entries`, or by `max_bytes` of approximate entry size.
    pub(crate) fn new(max_entries: usize, max_bytes: Option<u64>) -> Self {
        let cache = match max_bytes {
            Some(bytes) => quick_cache::sync::Cache::with_weighter(
                max_entries.max(1),
                bytes.max(1),
                EntryWeighter { by_bytes: true },
            ),
            None => quick_cache::sync::Cache::with_weighter(
                max_entries.max(1),
                max_entries.max(1) as u64,
                EntryWeighter { by_bytes: false },
            ),
        };
        Self { cache }
    }

    /// The value under `key` if present, unexpired and of type `T`.
    #[inline]
    pub(crate) fn get<T: Clone + 'static>(&self, key: &str, now: Instant) -> Option<T> {
        let entry = self.cache.get(key)?;
        if entry.expires_at <= now {
            self.cache.remove(key);
            return None;
        }
        entry.value.downcast_ref::<T>().cloned()
    }

    /// Inserts a value for `ttl`; `size_hint` is its approximate size in bytes (for the
    /// weight budget). A zero ttl removes the key instead.
    pub(crate) fn insert<T: Send + Sync + 'static>(
        &self,
        key: &str,
        value: T,
        ttl: Duration,
        size_hint: usize,
    ) {
        if ttl.is_zero() {
            self.cache.remove(key);
            return;
        }
        let weight = u32::try_from(size_hint + key.len() + 64).unwrap_or(u32::MAX);
        self.cache.insert(
            Box::from(key),
            L1Entry {
                value: Arc::new(value),
                expires_at: Instant::now() + ttl,
                weight,
            },
        );
    }

    /// Removes every entry whose key matches `pred`.
    pub(crate) fn retain_keys(&self, keep: impl Fn(&str) -> bool) {
        self.cache.retain(|k, _| keep(k));
    }

    /// Whether an unexpired entry is stored under `key` (of any type).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.cache
            .get(key)
            .is_some_and(|e| e.expires_at > Instant::now())
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        self.cache.remove(key).is_some()
    }

    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// A key rendered without touching the heap when it fits in 200 bytes.
pub(crate) struct KeyBuf {
    stack: [u8; 200],
    len: usize,
    heap: Option<String>,
}

impl KeyBuf {
    #[inline]
    pub(crate) fn render(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Self {
            stack: [0; 200],
            len: 0,
            heap: None,
        };
        if let Some(s) = args.as_str() {
            let _ = buf.write_str(s);
        } else {
            let _ = buf.write_fmt(args);
        }
        buf
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match &self.heap {
            Some(s) => s,
            // Only whole `&str` pieces are ever copied in, so this is valid UTF-8.
            None => std::str::from_utf8(&self.stack[..self.len]).unwrap_or(""),
        }
    }

    pub(crate) fn into_string(self) -> String {
        match self.heap {
            Some(s) => s,
            None => self.as_str().to_owned(),
        }
    }
}

impl fmt::Write for KeyBuf {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(heap) = &mut self.heap {
            heap.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        if end <= self.stack.len() {
            self.stack[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let mut heap = String::with_capacity(end * 2);
            heap.push_str(std::str::from_utf8(&self.stack[..self.len]).unwrap_or(""));
            heap.push_str(s);
            self.heap = Some(heap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keybuf_spills_to_heap() {
        let long = "x".repeat(300);
        let k = KeyBuf::render(format_args!("a:{long}"));
        assert_eq!(k.as_str().len(), 302);
        let id = 5;
        let k = KeyBuf::render(format_args!("user:{id}"));
        assert_eq!(k.as_str(), "user:5");
        assert_eq!(k.into_string(), "user:5");
    }

    #[test]
    fn l1_expires_and_checks_type() {
        let l1 = L1::new(10, None);
        l1.insert("a", 5u32, Duration::from_secs(60), 4);
        let now = Instant::now();
        assert_eq!(l1.get::<u32>("a", now), Some(5));
        assert_eq!(l1.get::<u64>("a", now), None);
        assert_eq!(l1.get::<u32>("a", now + Duration::from_secs(61)), None);
        assert_eq!(l1.len(), 0);
    }

    #[test]
    fn l1_weight_budget_evicts() {
        let l1 = L1::new(1000, Some(10_000));
        for i in 0..1000 {
            l1.insert(
                &format!("k{i}"),
                vec![0u8; 1000],
                Duration::from_secs(60),
                1000,
            );
        }
        assert!(
            l1.len() < 20,
            "{} entries kept within a 10 kB budget",
            l1.len()
        );
    }
}
