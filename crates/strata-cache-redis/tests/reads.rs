//! What a read sends to Redis, counted by the server itself (`INFO
//! commandstats` of a server of the test's own): one `HMGET`, and the renewal
//! script only for a sliding entry, after the read.

mod common;

use std::time::Duration;

use bytes::Bytes;
use strata_cache::{DistributedCache, EntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

/// Calls of `command` that ran without error since the last `CONFIG
/// RESETSTAT` (an `EVALSHA` of a script the server did not know yet fails).
async fn calls(raw: &mut common::Raw, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:");
    let Some(stats) = info.lines().find_map(|line| line.strip_prefix(&prefix)) else {
        return 0;
    };
    let stat = |name: &str| {
        stats
            .split(',')
            .find_map(|field| field.strip_prefix(name))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    stat("calls=") - stat("failed_calls=")
}

async fn reset_stats(raw: &mut common::Raw) {
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_read_is_one_hmget_and_only_a_sliding_entry_is_renewed() {
    let server = RedisServer::new();
    let cache = RedisCache::new(RedisCacheOptions::new(server.url())).unwrap();
    let mut raw = common::raw(&server.url()).await;
    let value = Bytes::from_static(b"v");
    let absolute = EntryOptions::new().with_relative_expiration(Duration::from_secs(60));
    let sliding = EntryOptions::new().with_sliding_expiration(Duration::from_secs(60));
    cache
        .set("absolute", value.clone(), &absolute)
        .await
        .unwrap();
    cache
        .set("forever", value.clone(), &EntryOptions::new())
        .await
        .unwrap();
    cache.set("sliding", value.clone(), &sliding).await.unwrap();

    reset_stats(&mut raw).await;
    for _ in 0..10 {
        assert_eq!(cache.get("absolute").await.unwrap(), Some(value.clone()));
        assert_eq!(cache.get("forever").await.unwrap(), Some(value.clone()));
        assert_eq!(cache.get("missing").await.unwrap(), None);
    }
    let values = cache
        .get_many(&["absolute", "forever", "missing"])
        .await
        .unwrap();
    assert_eq!(values, [Some(value.clone()), Some(value.clone()), None]);
    assert_eq!(calls(&mut raw, "hmget").await, 33, "one HMGET per key read");
    for command in ["multi", "exec", "evalsha", "eval", "pexpire"] {
        assert_eq!(
            calls(&mut raw, command).await,
            0,
            "a read of an entry that does not slide sent {command}"
        );
    }

    reset_stats(&mut raw).await;
    for _ in 0..10 {
        assert_eq!(cache.get("sliding").await.unwrap(), Some(value.clone()));
    }
    let values = cache.get_many(&["sliding", "absolute"]).await.unwrap();
    assert_eq!(values, [Some(value.clone()), Some(value.clone())]);
    // The renewals follow the reads without being waited for.
    common::poll("every sliding read renews", Duration::from_secs(5), || {
        let mut raw = raw.clone();
        async move { (calls(&mut raw, "evalsha").await == 11).then_some(()) }
    })
    .await;
    // 12 reads, and the HMGET inside each of the 11 renewal scripts.
    assert_eq!(calls(&mut raw, "hmget").await, 12 + 11);
    assert_eq!(calls(&mut raw, "multi").await, 0);

    // A server that forgot the script (restarted, or SCRIPT FLUSH) while the
    // cache pipelines the renewal with the read: the read still answers, and
    // the renewal follows once the script is loaded again.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = redis::cmd("PEXPIRE")
        .arg("sliding")
        .arg(5_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        cache.get("sliding").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    common::poll(
        "the renewal follows a NOSCRIPT",
        Duration::from_secs(5),
        || {
            let mut raw = raw.clone();
            async move {
                let ttl: i64 = redis::cmd("PTTL")
                    .arg("sliding")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                (ttl > 50_000).then_some(())
            }
        },
    )
    .await;
}
