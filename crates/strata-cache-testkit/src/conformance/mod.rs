//! The conformance suite: the semantics of [`DistributedCache`] as executable
//! checks. Every backend runs it with one call, [`run_all`], and the checks at
//! capacity with another, [`run_at_capacity`], on a cache small enough to fill;
//! a backend whose store other programs can write runs [`run_with_foreign`].
//!
//! This file holds the checks of the four core operations; `versions` those
//! of the batch read, the version-checked write and the stamps; `writes`
//! those of what writes leave behind (the typed helpers over the backend);
//! `capacity` those of a full cache; `foreign` those of keys the cache did not
//! write.
//!
//! Expiry checks use short real waits (hundreds of milliseconds), because the
//! backends under test keep time on their own clocks (Redis does). The margins
//! are wide enough for a loaded two-core machine, yet a backend that rounds
//! expiry to whole seconds fails them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::join_all;
use strata_cache::{DistributedCache, EntryOptions, ErrorKind};
use tokio::time::sleep;

/// Runs every check against `cache`, concurrently, each on its own keys.
///
/// The keys carry a unique prefix, so the suite can run against a shared
/// server while other tests use it.
///
/// # Panics
///
/// When a check fails; the message names the check and what was expected.
pub async fn run_all<C: DistributedCache + ?Sized>(cache: &C) {
    let k = Keys::new();
    tokio::join!(
        missing_key_is_none(cache, &k),
        round_trips_empty_and_binary_values(cache, &k),
        keys_are_case_sensitive(cache, &k),
        empty_key_is_rejected(cache),
        set_overwrites_value_and_expiration(cache, &k),
        remove_removes(cache, &k),
        invalid_options_are_rejected(cache, &k),
        relative_wins_over_absolute(cache, &k),
        absolute_and_relative_entries_expire_on_time(cache, &k),
        sliding_entry_expires_when_idle_and_reads_renew_it(cache, &k),
        refresh_renews_a_sliding_entry(cache, &k),
        sliding_never_outlives_absolute(cache, &k),
        refresh_does_not_extend_absolute_only_entries(cache, &k),
        concurrent_writers_never_tear_values(cache, &k),
    );
    versions::run_all(cache, &k).await;
    writes::run_all(cache, &k).await;
}

mod capacity;
mod foreign;
mod versions;
mod writes;

pub use capacity::run_at_capacity;
pub use foreign::{ForeignWriter, run_with_foreign};

/// Unique key names for one run of the suite.
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn new() -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("conformance:{}:{nanos}:{run}:", std::process::id()),
        }
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

pub(crate) const MS: Duration = Duration::from_millis(1);

pub(crate) fn value(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(crate) async fn get<C: DistributedCache + ?Sized>(
    cache: &C,
    key: &str,
    check: &str,
) -> Option<Bytes> {
    cache
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("[{check}] get({key:?}) failed: {e}"))
}

pub(crate) async fn set<C: DistributedCache + ?Sized>(
    cache: &C,
    key: &str,
    v: Bytes,
    options: &EntryOptions,
    check: &str,
) {
    cache
        .set(key, v, options)
        .await
        .unwrap_or_else(|e| panic!("[{check}] set({key:?}, {options:?}) failed: {e}"));
}

async fn refresh<C: DistributedCache + ?Sized>(cache: &C, key: &str, check: &str) {
    cache
        .refresh(key)
        .await
        .unwrap_or_else(|e| panic!("[{check}] refresh({key:?}) failed: {e}"));
}

async fn missing_key_is_none<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "missing_key_is_none";
    assert_eq!(
        get(cache, &k.key("never-written"), CHECK).await,
        None,
        "[{CHECK}]"
    );
    refresh(cache, &k.key("never-written"), CHECK).await;
    cache
        .remove(&k.key("never-written"))
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] removing a missing key must succeed: {e}"));
}

async fn round_trips_empty_and_binary_values<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "round_trips_empty_and_binary_values";
    let options = EntryOptions::new();
    let binary: Bytes = (0..=255u8).chain((0..=255u8).rev()).collect();
    let cases = [
        ("plain", value("hello, world")),
        ("empty", Bytes::new()),
        ("binary", binary),
        ("large", Bytes::from(vec![0xA5u8; 256 * 1024])),
        ("unicode-key-ünï ✓", value("ok")),
    ];
    for (name, v) in cases {
        let key = k.key(name);
        set(cache, &key, v.clone(), &options, CHECK).await;
        assert_eq!(
            get(cache, &key, CHECK).await,
            Some(v),
            "[{CHECK}] {name}: the value read back differs from the value written"
        );
    }
}

async fn keys_are_case_sensitive<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "keys_are_case_sensitive";
    let options = EntryOptions::new();
    set(cache, &k.key("Case"), value("upper"), &options, CHECK).await;
    set(cache, &k.key("case"), value("lower"), &options, CHECK).await;
    assert_eq!(
        get(cache, &k.key("Case"), CHECK).await,
        Some(value("upper")),
        "[{CHECK}]"
    );
    assert_eq!(
        get(cache, &k.key("case"), CHECK).await,
        Some(value("lower")),
        "[{CHECK}]"
    );
    assert_eq!(get(cache, &k.key("CASE"), CHECK).await, None, "[{CHECK}]");
}

async fn empty_key_is_rejected<C: DistributedCache + ?Sized>(cache: &C) {
    const CHECK: &str = "empty_key_is_rejected";
    let err = cache
        .get("")
        .await
        .expect_err("[empty_key_is_rejected] get(\"\")");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "[{CHECK}] {err}");
    let err = cache
        .set("", value("x"), &EntryOptions::new())
        .await
        .expect_err("[empty_key_is_rejected] set(\"\")");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "[{CHECK}] {err}");
}

async fn set_overwrites_value_and_expiration<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "set_overwrites_value_and_expiration";
    let short = EntryOptions::new().with_relative_expiration(200 * MS);
    let forever = EntryOptions::new();
    let a = k.key("overwrite-clears-ttl");
    let b = k.key("overwrite-adds-ttl");
    set(cache, &a, value("v1"), &short, CHECK).await;
    set(cache, &a, value("v2"), &forever, CHECK).await;
    set(cache, &b, value("v1"), &forever, CHECK).await;
    set(cache, &b, value("v2"), &short, CHECK).await;
    assert_eq!(
        get(cache, &a, CHECK).await,
        Some(value("v2")),
        "[{CHECK}] value not replaced"
    );
    sleep(500 * MS).await;
    assert_eq!(
        get(cache, &a, CHECK).await,
        Some(value("v2")),
        "[{CHECK}] the old entry's expiration survived an overwrite without expiration"
    );
    assert_eq!(
        get(cache, &b, CHECK).await,
        None,
        "[{CHECK}] an overwrite with a 200 ms expiration did not expire"
    );
}

async fn remove_removes<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "remove_removes";
    let key = k.key("removed");
    set(cache, &key, value("v"), &EntryOptions::new(), CHECK).await;
    cache
        .remove(&key)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] remove failed: {e}"));
    assert_eq!(get(cache, &key, CHECK).await, None, "[{CHECK}]");
}

async fn invalid_options_are_rejected<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "invalid_options_are_rejected";
    let key = k.key("invalid-options");
    let past = SystemTime::now() - Duration::from_secs(1);
    let cases = [
        (
            "absolute in the past",
            EntryOptions::new().with_absolute_expiration(past),
        ),
        (
            "zero relative",
            EntryOptions::new().with_relative_expiration(Duration::ZERO),
        ),
        (
            "zero sliding",
            EntryOptions::new().with_sliding_expiration(Duration::ZERO),
        ),
    ];
    for (name, options) in cases {
        let err = cache.set(&key, value("v"), &options).await.expect_err(name);
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidOptions,
            "[{CHECK}] {name}: {err}"
        );
        assert_eq!(
            get(cache, &key, CHECK).await,
            None,
            "[{CHECK}] {name} stored a value"
        );
    }
}

async fn relative_wins_over_absolute<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "relative_wins_over_absolute";
    let shorter = k.key("relative-shorter");
    let longer = k.key("relative-longer");
    let now = SystemTime::now();
    let relative_short = EntryOptions::new()
        .with_absolute_expiration(now + Duration::from_secs(60))
        .with_relative_expiration(200 * MS);
    let relative_long = EntryOptions::new()
        .with_absolute_expiration(now + 200 * MS)
        .with_relative_expiration(Duration::from_secs(60));
    set(cache, &shorter, value("v"), &relative_short, CHECK).await;
    set(cache, &longer, value("v"), &relative_long, CHECK).await;
    sleep(500 * MS).await;
    assert_eq!(
        get(cache, &shorter, CHECK).await,
        None,
        "[{CHECK}] absolute won over a shorter relative"
    );
    assert!(
        get(cache, &longer, CHECK).await.is_some(),
        "[{CHECK}] absolute won over a longer relative"
    );
}

async fn absolute_and_relative_entries_expire_on_time<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "absolute_and_relative_entries_expire_on_time";
    let relative = k.key("expires-relative");
    let absolute = k.key("expires-absolute");
    let sub_second = k.key("expires-sub-second");
    let second = EntryOptions::new().with_relative_expiration(1000 * MS);
    set(cache, &relative, value("v"), &second, CHECK).await;
    let at = SystemTime::now() + 1000 * MS;
    let at = EntryOptions::new().with_absolute_expiration(at);
    set(cache, &absolute, value("v"), &at, CHECK).await;
    // 400 ms: a backend that rounds expiry up to whole seconds keeps it 1 s.
    let short = EntryOptions::new().with_relative_expiration(400 * MS);
    set(cache, &sub_second, value("v"), &short, CHECK).await;
    assert!(
        get(cache, &sub_second, CHECK).await.is_some(),
        "[{CHECK}] a 400 ms entry expired at once"
    );
    sleep(100 * MS).await;
    assert!(
        get(cache, &relative, CHECK).await.is_some(),
        "[{CHECK}] relative entry expired early"
    );
    assert!(
        get(cache, &absolute, CHECK).await.is_some(),
        "[{CHECK}] absolute entry expired early"
    );
    sleep(750 * MS).await;
    assert_eq!(
        get(cache, &sub_second, CHECK).await,
        None,
        "[{CHECK}] a 400 ms entry outlived 850 ms: is expiry rounded to seconds?"
    );
    sleep(650 * MS).await;
    assert_eq!(
        get(cache, &relative, CHECK).await,
        None,
        "[{CHECK}] a 1 s relative entry outlived 1.5 s"
    );
    assert_eq!(
        get(cache, &absolute, CHECK).await,
        None,
        "[{CHECK}] a 1 s absolute entry outlived 1.5 s"
    );
}

/// Reads or refreshes a 1 s sliding entry every 250 ms for 1.25 s (each touch
/// well inside the window, so a loaded machine does not fail it), then leaves
/// it idle for 1.6 s: it must be gone.
async fn touch_a_sliding_entry<C: DistributedCache + ?Sized>(
    cache: &C,
    key: &str,
    by_refresh: bool,
    check: &str,
) {
    let options = EntryOptions::new().with_sliding_expiration(1000 * MS);
    set(cache, key, value("v"), &options, check).await;
    for i in 0..5 {
        sleep(250 * MS).await;
        if by_refresh {
            refresh(cache, key, check).await;
        } else {
            assert!(
                get(cache, key, check).await.is_some(),
                "[{check}] read {i} found nothing: get did not renew the entry"
            );
        }
    }
    assert!(
        get(cache, key, check).await.is_some(),
        "[{check}] the entry did not survive 1.25 s of touches every 250 ms"
    );
    sleep(1600 * MS).await;
    assert_eq!(
        get(cache, key, check).await,
        None,
        "[{check}] idle sliding entry did not expire"
    );
}

async fn sliding_entry_expires_when_idle_and_reads_renew_it<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "sliding_entry_expires_when_idle_and_reads_renew_it";
    touch_a_sliding_entry(cache, &k.key("sliding-get"), false, CHECK).await;
}

async fn refresh_renews_a_sliding_entry<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "refresh_renews_a_sliding_entry";
    touch_a_sliding_entry(cache, &k.key("sliding-refresh"), true, CHECK).await;
}

async fn sliding_never_outlives_absolute<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "sliding_never_outlives_absolute";
    let key = k.key("sliding-capped");
    // Capped at 1.2 s; each touch would otherwise push expiry 1 s further.
    let options = EntryOptions::new()
        .with_relative_expiration(1200 * MS)
        .with_sliding_expiration(1000 * MS);
    set(cache, &key, value("v"), &options, CHECK).await;
    for _ in 0..2 {
        sleep(400 * MS).await;
        assert!(
            get(cache, &key, CHECK).await.is_some(),
            "[{CHECK}] expired early"
        );
    }
    refresh(cache, &key, CHECK).await;
    // At 1.5 s: past the 1.2 s cap, short of the 1.8 s an uncapped slide reaches.
    sleep(700 * MS).await;
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] slid past its absolute expiration"
    );
}

async fn refresh_does_not_extend_absolute_only_entries<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "refresh_does_not_extend_absolute_only_entries";
    let key = k.key("absolute-refresh");
    let options = EntryOptions::new().with_relative_expiration(1000 * MS);
    set(cache, &key, value("v"), &options, CHECK).await;
    sleep(600 * MS).await;
    refresh(cache, &key, CHECK).await;
    assert!(
        get(cache, &key, CHECK).await.is_some(),
        "[{CHECK}] expired early"
    );
    // At 1.3 s: past its 1 s expiry, short of the 1.6 s a renewal would give.
    sleep(700 * MS).await;
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] refresh or get extended an absolute-only entry"
    );
}

async fn concurrent_writers_never_tear_values<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "concurrent_writers_never_tear_values";
    const TASKS: u8 = 16;
    const ROUNDS: usize = 40;
    const LEN: usize = 4096;
    let keys: Vec<String> = (0..4).map(|i| k.key(&format!("shared-{i}"))).collect();
    let options = EntryOptions::new();
    let tasks = (0..TASKS).map(|task| {
        let keys = &keys;
        let options = &options;
        async move {
            for round in 0..ROUNDS {
                let key = &keys[(round + usize::from(task)) % keys.len()];
                set(cache, key, Bytes::from(vec![task; LEN]), options, CHECK).await;
                if let Some(read) = get(cache, key, CHECK).await {
                    assert_eq!(
                        read.len(),
                        LEN,
                        "[{CHECK}] a read returned a truncated value"
                    );
                    assert!(
                        read.iter().all(|b| *b == read[0]),
                        "[{CHECK}] a read returned bytes of two different writes"
                    );
                }
            }
        }
    });
    join_all(tasks).await;
}
