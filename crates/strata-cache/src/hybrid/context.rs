//! [`FactoryContext`]: what a factory knows about its call and may change
//! about the entry it produces.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Passed by value to a `get_or_create` factory.
///
/// Clones share one state, so a factory may hand a clone to helper tasks.
/// Changes made after the factory's future completes are ignored.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use strata_cache::{HybridCache, HybridEntryOptions};
///
/// let cache = HybridCache::builder().build();
/// let found: Option<String> = cache
///     .get_or_create("user:404", &HybridEntryOptions::new(), |ctx| async move {
///         // Not in the database: do not cache the absence for long.
///         ctx.set_expiration(Duration::from_secs(5));
///         ctx.add_tags(["users"]);
///         Ok::<_, std::io::Error>(None)
///     })
///     .await?;
/// assert_eq!(found, None);
/// # Ok::<(), strata_cache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FactoryContext {
    key: Arc<str>,
    has_stale: bool,
    // A std Mutex: held for a field update, never across an await.
    state: Arc<Mutex<ContextState>>,
}

/// What the factory changed.
#[derive(Debug, Default)]
pub(crate) struct ContextState {
    pub(crate) expiration: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) dont_cache: bool,
}

impl FactoryContext {
    pub(crate) fn new(key: &str, has_stale: bool) -> Self {
        Self {
            key: Arc::from(key),
            has_stale,
            state: Arc::default(),
        }
    }

    /// The key being produced.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// True when a stale value of this key is kept (fail-safe) and will be
    /// served if the factory fails.
    pub fn has_stale_value(&self) -> bool {
        self.has_stale
    }

    /// Replaces the logical expiration of the entry (the local one is capped
    /// by it). A zero duration means "do not cache".
    pub fn set_expiration(&self, expiration: Duration) {
        self.lock().expiration = Some(expiration);
    }

    /// Adds tags to those of the call's options.
    pub fn add_tags<I, S>(&self, tags: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.lock().tags.extend(tags.into_iter().map(Into::into));
    }

    /// Declines to cache the result (e.g. a `None` for a missing row): every
    /// waiting caller still gets it, nothing is written.
    pub fn dont_cache(&self) {
        self.lock().dont_cache = true;
    }

    /// Takes the changes, once the factory is done.
    pub(crate) fn finish(&self) -> ContextState {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContextState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
