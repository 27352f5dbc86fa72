//! Cache-aside on RedisCache with the typed helpers: the fill after a miss is
//! version-checked, so a removal made while the factory ran wins.

mod common;

use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};

#[tokio::test]
async fn a_removal_while_the_factory_runs_keeps_the_old_row_out_of_redis() {
    let cache = RedisCache::new(RedisCacheOptions::new(common::shared_url())).unwrap();
    let key = common::unique("cache-aside-race");
    let options = EntryOptions::new();
    let loaded: u32 = cache
        .get_or_set(&key, &options, || async {
            let old_row = 1;
            cache.remove(&key).await.unwrap(); // a writer commits and invalidates
            Ok::<_, std::io::Error>(old_row)
        })
        .await
        .unwrap();
    assert_eq!(loaded, 1);
    assert_eq!(cache.get_value::<u32>(&key).await.unwrap(), None);
    let fresh: u32 = cache
        .get_or_set(&key, &options, || async { Ok::<_, std::io::Error>(2) })
        .await
        .unwrap();
    assert_eq!(fresh, 2);
    assert_eq!(cache.get_value::<u32>(&key).await.unwrap(), Some(2));
    cache.remove(&key).await.unwrap();
}
