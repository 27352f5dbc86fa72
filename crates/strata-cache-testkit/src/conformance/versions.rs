//! Conformance checks of the coherence operations: `get_many`, versions
//! (`get_versioned`, `set_if_version`, tombstones) and `next_stamp`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::join_all;
use strata_cache::{DistributedCache, EntryOptions, ErrorKind, Version};
use tokio::time::sleep;

use super::{Keys, MS, get, set, value};

pub(super) async fn run_all<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    tokio::join!(
        get_many_reads_each_key_in_order(cache, k),
        get_many_renews_sliding_entries(cache, k),
        versions_change_with_every_write_and_removal(cache, k),
        a_version_checked_write_lands_only_if_nothing_changed(cache, k),
        a_removal_defeats_an_older_write_back(cache, k),
        version_checked_writes_expire_like_set(cache, k),
        concurrent_version_checked_writes_land_once(cache, k),
        stamps_only_grow(cache, k),
        a_key_holding_another_value_is_no_stamp(cache, k),
    );
}

async fn versioned<C: DistributedCache + ?Sized>(
    cache: &C,
    key: &str,
    check: &str,
) -> (Option<Bytes>, Version) {
    let read = cache
        .get_versioned(key)
        .await
        .unwrap_or_else(|e| panic!("[{check}] get_versioned({key:?}) failed: {e}"));
    (read.value, read.version)
}

async fn set_if<C: DistributedCache + ?Sized>(
    cache: &C,
    key: &str,
    v: &str,
    options: &EntryOptions,
    expected: &Version,
    check: &str,
) -> bool {
    cache
        .set_if_version(key, value(v), options, expected)
        .await
        .unwrap_or_else(|e| panic!("[{check}] set_if_version({key:?}) failed: {e}"))
}

async fn remove<C: DistributedCache + ?Sized>(cache: &C, key: &str, check: &str) {
    cache
        .remove(key)
        .await
        .unwrap_or_else(|e| panic!("[{check}] remove({key:?}) failed: {e}"));
}

async fn get_many_reads_each_key_in_order<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "get_many_reads_each_key_in_order";
    let options = EntryOptions::new();
    let (a, b, missing, gone, short) = (
        k.key("many-a"),
        k.key("many-b"),
        k.key("many-missing"),
        k.key("many-removed"),
        k.key("many-expired"),
    );
    set(cache, &a, value("A"), &options, CHECK).await;
    set(cache, &b, Bytes::new(), &options, CHECK).await;
    set(cache, &gone, value("gone"), &options, CHECK).await;
    remove(cache, &gone, CHECK).await;
    let brief = EntryOptions::new().with_relative_expiration(100 * MS);
    set(cache, &short, value("brief"), &brief, CHECK).await;
    sleep(400 * MS).await;
    let keys = [
        b.as_str(),
        missing.as_str(),
        a.as_str(),
        gone.as_str(),
        short.as_str(),
        a.as_str(),
    ];
    let values = cache
        .get_many(&keys)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] get_many failed: {e}"));
    assert_eq!(
        values,
        vec![
            Some(Bytes::new()),
            None,
            Some(value("A")),
            None,
            None,
            Some(value("A"))
        ],
        "[{CHECK}] one value per key, in order: empty stays empty, missing, removed and expired are None"
    );
    let none = cache
        .get_many(&[])
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] get_many of no key failed: {e}"));
    assert!(none.is_empty(), "[{CHECK}] no key, no value");
    let err = cache
        .get_many(&[a.as_str(), ""])
        .await
        .expect_err("an empty key in get_many must be rejected");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "[{CHECK}] {err}");
}

/// A 1 s sliding entry read only through `get_many`, every 250 ms for
/// 1.25 s, is still there: the batch read renews it as `get` does.
async fn get_many_renews_sliding_entries<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "get_many_renews_sliding_entries";
    let key = k.key("many-sliding");
    let other = k.key("many-sliding-other");
    let options = EntryOptions::new().with_sliding_expiration(1000 * MS);
    set(cache, &key, value("slides"), &options, CHECK).await;
    for i in 0..5 {
        sleep(250 * MS).await;
        let values = cache
            .get_many(&[key.as_str(), other.as_str()])
            .await
            .unwrap_or_else(|e| panic!("[{CHECK}] get_many failed: {e}"));
        assert_eq!(
            values,
            vec![Some(value("slides")), None],
            "[{CHECK}] read {i}: get_many did not renew the entry"
        );
    }
}

async fn versions_change_with_every_write_and_removal<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "versions_change_with_every_write_and_removal";
    let key = k.key("versions");
    let options = EntryOptions::new();
    let (nothing, absent) = versioned(cache, &key, CHECK).await;
    assert_eq!(nothing, None, "[{CHECK}]");
    let (_, again) = versioned(cache, &key, CHECK).await;
    assert_eq!(absent, again, "[{CHECK}] reading changes no version");
    set(cache, &key, value("one"), &options, CHECK).await;
    let (one, v1) = versioned(cache, &key, CHECK).await;
    assert_eq!(one, Some(value("one")), "[{CHECK}]");
    assert_ne!(v1, absent, "[{CHECK}] a write changes the version");
    let (_, v1_again) = versioned(cache, &key, CHECK).await;
    assert_eq!(v1, v1_again, "[{CHECK}] reading changes no version");
    set(cache, &key, value("one"), &options, CHECK).await;
    let (_, v2) = versioned(cache, &key, CHECK).await;
    assert_ne!(
        v2, v1,
        "[{CHECK}] rewriting the same bytes changes the version"
    );
    remove(cache, &key, CHECK).await;
    let (removed, v3) = versioned(cache, &key, CHECK).await;
    assert_eq!(removed, None, "[{CHECK}] a removed key reads as missing");
    assert_eq!(get(cache, &key, CHECK).await, None, "[{CHECK}]");
    assert_ne!(v3, v2, "[{CHECK}] a removal changes the version");
    assert_ne!(
        v3, absent,
        "[{CHECK}] a removal is remembered (a tombstone)"
    );
}

async fn a_version_checked_write_lands_only_if_nothing_changed<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "a_version_checked_write_lands_only_if_nothing_changed";
    let key = k.key("cas");
    let options = EntryOptions::new();
    let (_, absent) = versioned(cache, &key, CHECK).await;
    assert!(
        set_if(cache, &key, "filled", &options, &absent, CHECK).await,
        "[{CHECK}] a miss is filled"
    );
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("filled")),
        "[{CHECK}]"
    );
    assert!(
        !set_if(cache, &key, "again", &options, &absent, CHECK).await,
        "[{CHECK}] the same read cannot fill twice: the first fill changed the version"
    );
    let (_, filled) = versioned(cache, &key, CHECK).await;
    set(cache, &key, value("newer"), &options, CHECK).await;
    assert!(
        !set_if(cache, &key, "older", &options, &filled, CHECK).await,
        "[{CHECK}] a write since the read defeats the write-back"
    );
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("newer")),
        "[{CHECK}]"
    );
    let (_, newer) = versioned(cache, &key, CHECK).await;
    assert!(
        set_if(cache, &key, "refreshed", &options, &newer, CHECK).await,
        "[{CHECK}] an unchanged entry is replaced"
    );
    assert!(
        !set_if(cache, &key, "x", &options, &Version::unversioned(), CHECK).await,
        "[{CHECK}] an unversioned expectation never matches"
    );
}

async fn a_removal_defeats_an_older_write_back<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "a_removal_defeats_an_older_write_back";
    let options = EntryOptions::new();
    // The cache-aside race: a reader misses and loads the old row; a writer
    // commits and removes the key; the reader's fill must not land.
    let key = k.key("race-miss");
    let (_, before) = versioned(cache, &key, CHECK).await;
    remove(cache, &key, CHECK).await;
    assert!(
        !set_if(cache, &key, "old row", &options, &before, CHECK).await,
        "[{CHECK}] a fill read before a removal of a missing key must not land"
    );
    assert_eq!(get(cache, &key, CHECK).await, None, "[{CHECK}]");
    // The same with an entry present at the read.
    let key = k.key("race-hit");
    set(cache, &key, value("v1"), &options, CHECK).await;
    let (_, before) = versioned(cache, &key, CHECK).await;
    remove(cache, &key, CHECK).await;
    assert!(
        !set_if(cache, &key, "v1 again", &options, &before, CHECK).await,
        "[{CHECK}] a refresh read before a removal must not land"
    );
    assert_eq!(get(cache, &key, CHECK).await, None, "[{CHECK}]");
    // A read after the removal fills as usual.
    let (_, after) = versioned(cache, &key, CHECK).await;
    assert!(
        set_if(cache, &key, "v2", &options, &after, CHECK).await,
        "[{CHECK}]"
    );
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("v2")),
        "[{CHECK}]"
    );
}

async fn version_checked_writes_expire_like_set<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "version_checked_writes_expire_like_set";
    let key = k.key("cas-expiring");
    let (_, absent) = versioned(cache, &key, CHECK).await;
    let options = EntryOptions::new().with_relative_expiration(300 * MS);
    assert!(
        set_if(cache, &key, "brief", &options, &absent, CHECK).await,
        "[{CHECK}]"
    );
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("brief")),
        "[{CHECK}]"
    );
    sleep(700 * MS).await;
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] the entry outlived its expiration"
    );
}

async fn concurrent_version_checked_writes_land_once<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "concurrent_version_checked_writes_land_once";
    let key = k.key("cas-concurrent");
    let options = EntryOptions::new();
    let (_, absent) = versioned(cache, &key, CHECK).await;
    let writers = (0..16).map(|i| {
        let (key, options, absent) = (&key, &options, &absent);
        async move { set_if(cache, key, &format!("writer {i}"), options, absent, CHECK).await }
    });
    let landed = join_all(writers).await.into_iter().filter(|l| *l).count();
    assert_eq!(landed, 1, "[{CHECK}] one read, one write-back");
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

async fn stamp<C: DistributedCache + ?Sized>(cache: &C, key: &str, check: &str) -> u64 {
    let options = EntryOptions::new().with_relative_expiration(60_000 * MS);
    cache
        .next_stamp(key, &options)
        .await
        .unwrap_or_else(|e| panic!("[{check}] next_stamp({key:?}) failed: {e}"))
}

async fn stamps_only_grow<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "stamps_only_grow";
    let key = k.key("stamp");
    let before = micros_now();
    let first = stamp(cache, &key, CHECK).await;
    // The backend's clock may be another machine's: allow a generous skew.
    assert!(
        first + 5_000_000 >= before,
        "[{CHECK}] a stamp is at least the backend's clock in microseconds ({first} < {before})"
    );
    let mut last = first;
    for _ in 0..20 {
        let next = stamp(cache, &key, CHECK).await;
        assert!(next > last, "[{CHECK}] {next} after {last}");
        last = next;
    }
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value(&last.to_string())),
        "[{CHECK}] the record holds the stamp in decimal"
    );
    // A stamp lost with its record still moves forward with the clock.
    remove(cache, &key, CHECK).await;
    sleep(5 * MS).await;
    let after_loss = stamp(cache, &key, CHECK).await;
    assert!(
        after_loss > last,
        "[{CHECK}] {after_loss} after a lost {last}"
    );
}

async fn a_key_holding_another_value_is_no_stamp<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "a_key_holding_another_value_is_no_stamp";
    let key = k.key("not-a-stamp");
    set(cache, &key, value("hello"), &EntryOptions::new(), CHECK).await;
    let options = EntryOptions::new();
    let err = cache
        .next_stamp(&key, &options)
        .await
        .expect_err("a key holding another value is not a stamp");
    assert_eq!(err.kind(), ErrorKind::Serialization, "[{CHECK}] {err}");
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("hello")),
        "[{CHECK}] left as it was"
    );
}
