//! Conformance checks of keys the cache did not write: [`run_with_foreign`].
//!
//! A cache shares its store with other programs (a .NET service, an
//! operator's script). A key that holds something the cache never writes (in
//! Redis, a string where the cache writes hashes) is not an entry: reads see
//! a miss, a batch read still answers for the other keys, version-checked
//! writes leave it alone, and only an explicit write replaces it. Only a
//! backend that can hold such keys runs these checks, given a
//! [`ForeignWriter`] that plants them.

use std::convert::Infallible;

use async_trait::async_trait;
use bytes::Bytes;
use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions};

use super::{Keys, get, set, value};

/// Writes into a backend's store what another program would, for
/// [`run_with_foreign`].
#[async_trait]
pub trait ForeignWriter: Send + Sync {
    /// Stores under the cache key `key` (before any prefix the cache adds) a
    /// value of a type the cache never writes.
    async fn plant_wrong_type(&self, key: &str);

    /// True while `key` still holds the value [`plant_wrong_type`](Self::plant_wrong_type)
    /// stored.
    async fn holds_wrong_type(&self, key: &str) -> bool;
}

/// Runs the checks of foreign keys against `cache`, planting them with
/// `foreign`.
///
/// # Panics
///
/// When a check fails; the message names the check and what was expected.
pub async fn run_with_foreign<C: DistributedCache + ?Sized>(
    cache: &C,
    foreign: &dyn ForeignWriter,
) {
    let k = Keys::new();
    a_key_of_another_type_reads_as_missing_and_stays(cache, foreign, &k).await;
}

async fn a_key_of_another_type_reads_as_missing_and_stays<C: DistributedCache + ?Sized>(
    cache: &C,
    foreign: &dyn ForeignWriter,
    k: &Keys,
) {
    const CHECK: &str = "a_key_of_another_type_reads_as_missing_and_stays";
    let options = EntryOptions::new();
    let (a, wrong, missing, b) = (
        k.key("foreign-a"),
        k.key("foreign-wrong-type"),
        k.key("foreign-missing"),
        k.key("foreign-b"),
    );
    set(cache, &a, value("A"), &options, CHECK).await;
    set(cache, &b, value("B"), &options, CHECK).await;
    foreign.plant_wrong_type(&wrong).await;

    assert_eq!(get(cache, &wrong, CHECK).await, None, "[{CHECK}] get");
    cache
        .refresh(&wrong)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] refresh of a key of another type failed: {e}"));
    let values = cache
        .get_many(&[a.as_str(), wrong.as_str(), missing.as_str(), b.as_str()])
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] get_many with a key of another type failed: {e}"));
    assert_eq!(
        values,
        vec![Some(value("A")), None, None, Some(value("B"))],
        "[{CHECK}] a key of another type is a miss; the others are read as usual"
    );
    let read = cache
        .get_versioned(&wrong)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] get_versioned failed: {e}"));
    assert_eq!(read.value, None, "[{CHECK}] get_versioned");
    let stored = cache
        .set_if_version(&wrong, value("fill"), &options, &read.version)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] set_if_version failed: {e}"));
    assert!(
        !stored,
        "[{CHECK}] a version-checked write replaced a foreign key"
    );
    let filled: u32 = cache
        .get_or_set(&wrong, &options, || async { Ok::<_, Infallible>(3) })
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(
        filled, 3,
        "[{CHECK}] get_or_set returns its factory's value"
    );
    assert!(
        foreign.holds_wrong_type(&wrong).await,
        "[{CHECK}] a read, or the fill of get_or_set, replaced another program's key"
    );

    set(cache, &wrong, Bytes::from_static(b"mine"), &options, CHECK).await;
    assert_eq!(
        get(cache, &wrong, CHECK).await,
        Some(value("mine")),
        "[{CHECK}] an explicit write replaces a key of another type"
    );
}
