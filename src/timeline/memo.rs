//! `Memo`: a bounded map of what this process worked out (parsed manifest chunks, manifest
//! heads, hashes of frames read, digests of listings kept), on moka: when full, moka evicts
//! the entries least worth keeping, never the whole map at once. Shared by the clones of one
//! `FrameCache`.

/// Values by key, at most `capacity` of them.
#[derive(Clone)]
pub(super) struct Memo<V>(moka::sync::Cache<String, V>);

impl<V: Clone + Send + Sync + 'static> Memo<V> {
    /// An empty memo of at most `capacity` entries.
    pub(super) fn new(capacity: u64) -> Self {
        Memo(
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .support_invalidation_closures()
                .build(),
        )
    }

    pub(super) fn get(&self, key: &str) -> Option<V> {
        self.0.get(key)
    }

    pub(super) fn insert(&self, key: String, value: V) {
        self.0.insert(key, value);
    }

    /// Keeps `value` under `key` and returns what was there. Not atomic: two racing callers
    /// may both see the old value, which for a memo costs one repeated piece of work.
    pub(super) fn replace(&self, key: String, value: V) -> Option<V> {
        let old = self.0.get(&key);
        self.0.insert(key, value);
        old
    }

    /// Keeps `make()` under `key` unless something is there already.
    pub(super) fn insert_if_absent(&self, key: &str, make: impl FnOnce() -> V) {
        self.0.entry_by_ref(key).or_insert_with(make);
    }

    pub(super) fn remove(&self, key: &str) {
        self.0.invalidate(key);
    }

    /// Drops every entry whose key starts with `prefix` (none is read back after this).
    pub(super) fn remove_prefixed(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        // Fails only without invalidation closures, which `new` enables.
        if self
            .0
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
            .is_err()
        {
            self.0.invalidate_all();
        }
    }
}
