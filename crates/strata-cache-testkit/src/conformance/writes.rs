//! Conformance checks of what a write leaves behind: the typed helpers over
//! the backend, which must never destroy bytes they cannot decode.

use std::convert::Infallible;

use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions};

use super::{Keys, get, set, value};

pub(super) async fn run_all<C: DistributedCache + ?Sized>(cache: &C, k: &Keys) {
    tokio::join!(
        undecodable_bytes_are_a_miss_and_stay(cache, k),
        a_fill_replaces_undecodable_bytes_only_if_unchanged(cache, k),
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
