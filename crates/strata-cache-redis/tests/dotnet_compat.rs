//! Wire compatibility with Microsoft.Extensions.Caching.StackExchangeRedis,
//! both directions, checked with raw Redis commands on the shared server.
//!
//! The .NET provider writes `HSET key absexp <ticks> sldexp <ticks> data <bytes>`
//! and then `EXPIRE key <seconds>`; it reads with `HMGET key absexp sldexp data`.
//! `SetString`/`GetString` are the same calls on the string's UTF-8 bytes.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions, ErrorKind};
use strata_cache_redis::{RedisCache, RedisCacheOptions};

const PREFIX: &str = "dotnet-app:";
const EPOCH_TICKS: i64 = 621_355_968_000_000_000;
const TICKS_PER_SEC: i64 = 10_000_000;

fn ticks_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    EPOCH_TICKS + i64::try_from(since.as_nanos() / 100).unwrap()
}

async fn setup() -> (RedisCache, common::Raw) {
    let url = common::shared_url();
    let cache = RedisCache::new(RedisCacheOptions::new(&url).with_instance_name(PREFIX)).unwrap();
    (cache, common::raw(&url).await)
}

/// What the .NET provider does in `SetAsync`.
async fn dotnet_set(
    raw: &mut common::Raw,
    key: &str,
    absexp: i64,
    sldexp: i64,
    data: &[u8],
    expire_secs: Option<i64>,
) {
    let full = format!("{PREFIX}{key}");
    let () = redis::cmd("HSET")
        .arg(&full)
        .arg("absexp")
        .arg(absexp)
        .arg("sldexp")
        .arg(sldexp)
        .arg("data")
        .arg(data)
        .query_async(raw)
        .await
        .unwrap();
    if let Some(secs) = expire_secs {
        let () = redis::cmd("EXPIRE")
            .arg(&full)
            .arg(secs)
            .query_async(raw)
            .await
            .unwrap();
    }
}

async fn pttl(raw: &mut common::Raw, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(format!("{PREFIX}{key}"))
        .query_async(raw)
        .await
        .unwrap()
}

/// What the .NET provider does in `GetAsync` (before its separate refresh).
async fn dotnet_get(raw: &mut common::Raw, key: &str) -> (i64, i64, Option<Vec<u8>>) {
    let (abs, sld, data): (Option<i64>, Option<i64>, Option<Vec<u8>>) = redis::cmd("HMGET")
        .arg(format!("{PREFIX}{key}"))
        .arg("absexp")
        .arg("sldexp")
        .arg("data")
        .query_async(raw)
        .await
        .unwrap();
    (abs.expect("absexp field"), sld.expect("sldexp field"), data)
}

/// Reads `key` through the cache and checks that it holds `data`.
async fn get_is(cache: &RedisCache, key: &str, data: &'static [u8]) {
    assert_eq!(
        cache.get(key).await.unwrap(),
        Some(Bytes::from_static(data))
    );
}

/// Waits until the PTTL of `key` is within `range` (a read renews a sliding
/// entry just after it returns), and returns it.
async fn pttl_becomes(
    raw: &common::Raw,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> i64 {
    common::poll(what, Duration::from_secs(5), || {
        let (mut raw, range) = (raw.clone(), range.clone());
        async move {
            let ttl = pttl(&mut raw, key).await;
            range.contains(&ttl).then_some(ttl)
        }
    })
    .await
}

#[tokio::test]
async fn reads_and_slides_entries_written_by_dotnet() {
    let (cache, mut raw) = setup().await;
    let sliding = common::unique("dotnet-sliding");
    let capped = common::unique("dotnet-sliding-capped");
    let absolute = common::unique("dotnet-absolute");
    let forever = common::unique("dotnet-forever");

    // Sliding 5 min; .NET set the first TTL to 1 s (as if the absolute were near).
    dotnet_set(&mut raw, &sliding, -1, 300 * TICKS_PER_SEC, b"s", Some(1)).await;
    // Sliding 5 min capped by an absolute expiration 3 s from now; .NET set
    // the first TTL to 1 s.
    dotnet_set(
        &mut raw,
        &capped,
        ticks_now() + 3 * TICKS_PER_SEC,
        300 * TICKS_PER_SEC,
        b"c",
        Some(1),
    )
    .await;
    // Absolute only, 10 s.
    dotnet_set(
        &mut raw,
        &absolute,
        ticks_now() + 10 * TICKS_PER_SEC,
        -1,
        b"a",
        Some(10),
    )
    .await;
    // No expiration.
    dotnet_set(&mut raw, &forever, -1, -1, b"f", None).await;

    get_is(&cache, &absolute, b"a").await;
    get_is(&cache, &forever, b"f").await;
    get_is(&cache, &sliding, b"s").await;
    pttl_becomes(
        &raw,
        &sliding,
        299_000..=300_000,
        "get slides a .NET entry to 5 min",
    )
    .await;
    get_is(&cache, &capped, b"c").await;
    // Renewed from 1 s, but never past the absolute expiration 3 s away.
    pttl_becomes(
        &raw,
        &capped,
        1_500..=3_000,
        "get slides a capped entry up to its absolute expiration",
    )
    .await;
    let ttl = pttl(&mut raw, &absolute).await;
    assert!(
        (7_000..=10_000).contains(&ttl),
        "an absolute-only entry changed TTL: {ttl}"
    );
    assert_eq!(pttl(&mut raw, &forever).await, -1, "an entry got a TTL");

    // refresh slides too, without reading.
    let () = redis::cmd("PEXPIRE")
        .arg(format!("{PREFIX}{sliding}"))
        .arg(1_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    cache.refresh(&sliding).await.unwrap();
    let ttl = pttl(&mut raw, &sliding).await;
    assert!(
        ttl > 299_000,
        "refresh did not slide a .NET entry: PTTL {ttl}"
    );

    // remove leaves a tombstone: no .NET field is left, so .NET's HMGET reads
    // a miss; only Strata's version survives, for TOMBSTONE_TTL.
    cache.remove(&forever).await.unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{PREFIX}{forever}"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(fields, ["ver"], "remove left .NET fields behind");
    let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(format!("{PREFIX}{forever}"))
        .arg("absexp")
        .arg("sldexp")
        .arg("data")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        fields,
        [None, None, None],
        "a .NET reader must see a removed entry as missing"
    );
    let ttl = pttl(&mut raw, &forever).await;
    assert!(
        ttl > 0 && ttl <= 600_000,
        "a tombstone lives at most TOMBSTONE_TTL: PTTL {ttl}"
    );
    for key in [&sliding, &capped, &absolute] {
        cache.remove(key).await.unwrap();
    }
}

#[tokio::test]
async fn entries_we_write_read_as_dotnet_expects() {
    let (cache, mut raw) = setup().await;
    let both = common::unique("rust-sliding-and-absolute");
    let absolute = common::unique("rust-absolute");
    let forever = common::unique("rust-forever");

    // The reference article's product list: 20 min absolute, 2 min sliding.
    let before = ticks_now();
    let options = EntryOptions::new()
        .with_relative_expiration(Duration::from_secs(20 * 60))
        .with_sliding_expiration(Duration::from_secs(2 * 60));
    cache
        .set(&both, Bytes::from_static(b"\x00binary\xff"), &options)
        .await
        .unwrap();
    let after = ticks_now();
    let (abs, sld, data) = dotnet_get(&mut raw, &both).await;
    assert!(
        (before + 1200 * TICKS_PER_SEC..=after + 1200 * TICKS_PER_SEC).contains(&abs),
        "absexp {abs} is not now + 20 min in .NET ticks"
    );
    assert_eq!(
        sld,
        120 * TICKS_PER_SEC,
        "sldexp is not TimeSpan ticks of 2 min"
    );
    assert_eq!(data.as_deref(), Some(&b"\x00binary\xff"[..]));
    let ttl = pttl(&mut raw, &both).await;
    assert!(
        (119_000..=120_000).contains(&ttl),
        "TTL is not min(sliding, absolute): {ttl}"
    );
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{PREFIX}{both}"))
        .query_async(&mut raw)
        .await
        .unwrap();
    fields.sort();
    assert_eq!(
        fields,
        ["absexp", "data", "sldexp", "ver"],
        "the .NET fields, and Strata's version which .NET ignores"
    );

    let at = SystemTime::now() + Duration::from_millis(90_250);
    cache
        .set(
            &absolute,
            Bytes::from_static(b"a"),
            &EntryOptions::new().with_absolute_expiration(at),
        )
        .await
        .unwrap();
    let (abs, sld, _) = dotnet_get(&mut raw, &absolute).await;
    let at_ticks = EPOCH_TICKS
        + i64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_nanos() / 100).unwrap();
    assert_eq!(abs, at_ticks);
    assert_eq!(sld, -1);
    let ttl = pttl(&mut raw, &absolute).await;
    assert!(
        (89_000..=90_251).contains(&ttl),
        "TTL is not in milliseconds: {ttl}"
    );

    cache
        .set(&forever, Bytes::from_static(b"f"), &EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(
        dotnet_get(&mut raw, &forever).await,
        (-1, -1, Some(b"f".to_vec()))
    );
    assert_eq!(pttl(&mut raw, &forever).await, -1);

    for key in [&both, &absolute, &forever] {
        cache.remove(key).await.unwrap();
    }
}

#[tokio::test]
async fn instance_name_prefixes_the_raw_key() {
    let (cache, mut raw) = setup().await;
    let key = common::unique("prefixed");
    cache
        .set(&key, Bytes::from_static(b"v"), &EntryOptions::new())
        .await
        .unwrap();
    let kind: String = redis::cmd("TYPE")
        .arg(format!("{PREFIX}{key}"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let bare: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!bare, "the key was written without the instance name");
    cache.remove(&key).await.unwrap();
}

#[tokio::test]
async fn set_replaces_a_foreign_value_of_another_type() {
    let (cache, mut raw) = setup().await;
    let key = common::unique("was-a-string");
    let () = redis::cmd("SET")
        .arg(format!("{PREFIX}{key}"))
        .arg("plain")
        .arg("EX")
        .arg(100)
        .query_async(&mut raw)
        .await
        .unwrap();
    cache
        .set(&key, Bytes::from_static(b"v"), &EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(pttl(&mut raw, &key).await, -1, "the old TTL survived");
    cache.remove(&key).await.unwrap();
}

#[tokio::test]
async fn values_over_512_mib_are_rejected_before_sending() {
    let (cache, _raw) = setup().await;
    // Zeroed pages are not touched, so this costs no real memory.
    let huge = Bytes::from(vec![0u8; 512 * 1024 * 1024 + 1]);
    let err = cache
        .set(&common::unique("huge"), huge, &EntryOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    assert!(err.message().contains("512 MiB"), "{err}");
}

/// Text with accents, CJK and a character outside the BMP (a surrogate pair
/// in .NET's UTF-16), whose UTF-8 .NET's `Encoding.UTF8.GetBytes` writes.
const TEXT: &str = "Grüße, 世界 😀";

/// `SetString(key, value)` then `SetString(key, value, options)` in .NET:
/// `HSET key absexp -1 sldexp -1 data <UTF-8>`, and with a 5-minute sliding
/// expiration the same with `sldexp` in ticks, then `EXPIRE key 300`. Both
/// read back with `get_string`, and a JSON read leaves them alone.
#[tokio::test]
async fn get_string_reads_what_dotnet_set_string_wrote() {
    let (cache, mut raw) = setup().await;
    let plain = common::unique("dotnet-string");
    let sliding = common::unique("dotnet-string-sliding");
    let empty = common::unique("dotnet-string-empty");
    dotnet_set(&mut raw, &plain, -1, -1, TEXT.as_bytes(), None).await;
    dotnet_set(
        &mut raw,
        &sliding,
        -1,
        300 * TICKS_PER_SEC,
        TEXT.as_bytes(),
        Some(300),
    )
    .await;
    dotnet_set(&mut raw, &empty, -1, -1, b"", None).await;

    assert_eq!(
        cache.get_string(&plain).await.unwrap().as_deref(),
        Some(TEXT)
    );
    assert_eq!(
        cache.get_string(&sliding).await.unwrap().as_deref(),
        Some(TEXT)
    );
    assert_eq!(cache.get_string(&empty).await.unwrap().as_deref(), Some(""));

    // A JSON read of a .NET string is a miss, and must not destroy it.
    assert_eq!(cache.get_value::<String>(&plain).await.unwrap(), None);
    let (_, _, data) = dotnet_get(&mut raw, &plain).await;
    assert_eq!(
        data.as_deref(),
        Some(TEXT.as_bytes()),
        "a typed read deleted or changed the .NET service's string"
    );
    for key in [&plain, &sliding, &empty] {
        cache.remove(key).await.unwrap();
    }
}

/// What `set_string` stores is what .NET's `GetString` reads: `HMGET key
/// absexp sldexp data` returns the string's UTF-8 as `data`, nothing else.
#[tokio::test]
async fn set_string_writes_what_dotnet_get_string_reads() {
    let (cache, mut raw) = setup().await;
    let forever = common::unique("rust-string");
    let sliding = common::unique("rust-string-sliding");
    cache
        .set_string(&forever, TEXT, &EntryOptions::new())
        .await
        .unwrap();
    let options = EntryOptions::new().with_sliding_expiration(Duration::from_secs(300));
    cache.set_string(&sliding, TEXT, &options).await.unwrap();

    let (abs, sld, data) = dotnet_get(&mut raw, &forever).await;
    assert_eq!((abs, sld), (-1, -1));
    let data = data.expect("data field");
    assert_eq!(data, TEXT.as_bytes(), "not the raw UTF-8 .NET stores");
    // Encoding.UTF8.GetString(data)
    assert_eq!(String::from_utf8(data).unwrap(), TEXT);

    let (abs, sld, data) = dotnet_get(&mut raw, &sliding).await;
    assert_eq!((abs, sld), (-1, 300 * TICKS_PER_SEC));
    assert_eq!(data.as_deref(), Some(TEXT.as_bytes()));

    // The JSON helpers do not interoperate with GetString: they store JSON.
    cache.set_value(&forever, TEXT).await.unwrap();
    let (_, _, data) = dotnet_get(&mut raw, &forever).await;
    assert_eq!(
        data.as_deref(),
        Some(format!("\"{TEXT}\"").as_bytes()),
        "set_value stores a JSON string, quotes included"
    );
    for key in [&forever, &sliding] {
        cache.remove(key).await.unwrap();
    }
}
