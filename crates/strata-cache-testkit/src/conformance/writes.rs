//! Conformance checks of what a write leaves behind: a failed write must not
//! leave the previous value to be served, and the typed helpers over the
//! backend must never destroy bytes they cannot decode.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions, ErrorKind, Version};

use super::{Keys, get, set, value};

/// A value no backend stores: one byte over 512 MiB, Redis' limit on a value
/// (and more than a `MemoryDistributedCache` under 512 MiB holds). Its pages
/// are zeroed on demand and never touched, so it costs no memory.
pub(super) const TOO_LARGE: usize = 512 * 1024 * 1024 + 1;

pub(super) async fn run_all<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    tokio::join!(
        a_failed_overwrite_leaves_the_key_missing(cache, k),
        a_failed_version_checked_write_removes_only_what_it_would_replace(cache, k),
        undecodable_bytes_are_a_miss_and_stay(cache, k),
        a_fill_replaces_undecodable_bytes_only_if_unchanged(cache, k),
    );
}

async fn versioned<C: DistributedCache + ?Sized>(cache: &C, key: &str, check: &str) -> Version {
    cache
        .get_versioned(key)
        .await
        .unwrap_or_else(|e| panic!("[{check}] get_versioned({key:?}) failed: {e}"))
        .version
}

/// A write-through caller that ignores cache errors must not serve the old
/// value after a failed `set`: the key reads as missing, as in .NET's memory
/// cache.
async fn a_failed_overwrite_leaves_the_key_missing<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "a_failed_overwrite_leaves_the_key_missing";
    let options = EntryOptions::new();
    let key = k.key("failed-overwrite-too-large");
    set(cache, &key, value("old"), &options, CHECK).await;
    let err = cache
        .set(&key, Bytes::from(vec![0u8; TOO_LARGE]), &options)
        .await
        .expect_err("a value over 512 MiB must be rejected");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "[{CHECK}] {err}");
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] the previous value survived a set that failed: too large"
    );

    let key = k.key("failed-overwrite-invalid-options");
    set(cache, &key, value("old"), &options, CHECK).await;
    let zero = EntryOptions::new().with_sliding_expiration(Duration::ZERO);
    let err = cache
        .set(&key, value("new"), &zero)
        .await
        .expect_err("a zero sliding expiration must be rejected");
    assert_eq!(err.kind(), ErrorKind::InvalidOptions, "[{CHECK}] {err}");
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] the previous value survived a set that failed: invalid options"
    );
    set(cache, &key, value("again"), &options, CHECK).await;
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("again")),
        "[{CHECK}] a later write lands as usual"
    );
}

/// A version-checked write that fails removes the value it would have
/// replaced; one that would not have landed leaves the key as it is.
async fn a_failed_version_checked_write_removes_only_what_it_would_replace<
    C: DistributedCache + ?Sized,
>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "a_failed_version_checked_write_removes_only_what_it_would_replace";
    let options = EntryOptions::new();
    let key = k.key("failed-cas");
    set(cache, &key, value("old"), &options, CHECK).await;
    let current = versioned(cache, &key, CHECK).await;
    let err = cache
        .set_if_version(&key, Bytes::from(vec![0u8; TOO_LARGE]), &options, &current)
        .await
        .expect_err("a value over 512 MiB must be rejected");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "[{CHECK}] {err}");
    assert_eq!(
        get(cache, &key, CHECK).await,
        None,
        "[{CHECK}] the value a failed write-back would have replaced is still served"
    );

    let key = k.key("failed-cas-stale");
    set(cache, &key, value("old"), &options, CHECK).await;
    let stale = versioned(cache, &key, CHECK).await;
    set(cache, &key, value("newer"), &options, CHECK).await;
    let err = cache
        .set_if_version(&key, Bytes::from(vec![0u8; TOO_LARGE]), &options, &stale)
        .await
        .expect_err("a value over 512 MiB must be rejected");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "[{CHECK}] {err}");
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("newer")),
        "[{CHECK}] a failed write-back that would not have landed removed a newer value"
    );
}

/// Bytes a typed read cannot decode may be another writer's (a .NET service,
/// the other side of a rolling deploy): the read is a miss and leaves them.
async fn undecodable_bytes_are_a_miss_and_stay<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    const CHECK: &str = "undecodable_bytes_are_a_miss_and_stay";
    let key = k.key("undecodable");
    set(
        cache,
        &key,
        value("plain text"),
        &EntryOptions::new(),
        CHECK,
    )
    .await;
    let read = cache
        .get_value::<u32>(&key)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] get_value failed: {e}"));
    assert_eq!(read, None, "[{CHECK}] undecodable bytes are a miss");
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("plain text")),
        "[{CHECK}] a typed read removed bytes it could not decode"
    );
}

/// `get_or_set` over undecodable bytes runs the factory; its fill (the caller
/// writing) replaces them if nothing wrote the key since the read, and loses
/// to a write made in between.
async fn a_fill_replaces_undecodable_bytes_only_if_unchanged<C: DistributedCache + ?Sized>(
    cache: &C,
    k: &Keys,
) {
    const CHECK: &str = "a_fill_replaces_undecodable_bytes_only_if_unchanged";
    let options = EntryOptions::new();
    let key = k.key("undecodable-filled");
    set(cache, &key, value("plain text"), &options, CHECK).await;
    let filled: u32 = cache
        .get_or_set(&key, &options, || async { Ok::<_, Infallible>(7) })
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(filled, 7, "[{CHECK}]");
    assert_eq!(
        get(cache, &key, CHECK).await,
        Some(value("7")),
        "[{CHECK}] the fill did not replace the undecodable bytes it read"
    );

    let raced = k.key("undecodable-raced");
    set(cache, &raced, value("plain text"), &options, CHECK).await;
    let loaded: u32 = cache
        .get_or_set(&raced, &options, || async {
            set(cache, &raced, value("newer text"), &options, CHECK).await;
            Ok::<_, Infallible>(8)
        })
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(loaded, 8, "[{CHECK}]");
    assert_eq!(
        get(cache, &raced, CHECK).await,
        Some(value("newer text")),
        "[{CHECK}] the fill overwrote a write made after its read"
    );
}
