//! Every Redis call runs in a `strata.redis` span with OpenTelemetry's
//! database attributes, and no span records a key or a value.

mod common;

use std::sync::{Arc, Mutex};

use strata_cache::{DistributedCache, EntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// A span's id, name and fields.
type Opened = (u64, String, Vec<(String, String)>);

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push((id.into_u64(), name, fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut fields = Vec::new();
        values.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = spans.iter_mut().rev().find(|s| s.0 == id.into_u64()) {
            span.2.extend(fields);
        }
    }
}

#[tokio::test]
async fn redis_calls_are_spans_without_keys_or_values() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let cache = RedisCache::new(RedisCacheOptions::new(common::shared_url())).unwrap();
    let key = common::unique("span-secret-key");
    cache
        .set(&key, "VALUE-77e1".into(), &EntryOptions::new())
        .await
        .unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    cache.remove(&key).await.unwrap();
    let spans = spans.0.lock().unwrap().clone();
    let operations: Vec<String> = spans
        .iter()
        .filter(|(_, name, _)| name == "strata.redis")
        .filter_map(|(_, _, fields)| {
            fields
                .iter()
                .find(|(f, _)| f == "db.operation.name")
                .map(|(_, v)| v.trim_matches('"').to_owned())
        })
        .collect();
    assert_eq!(operations, ["set", "get", "remove"]);
    let (_, _, fields) = &spans[0];
    assert!(
        fields.contains(&("db.system.name".into(), "\"redis\"".into())),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|(f, v)| f == "server.address" && v.starts_with("127.0.0.1:")),
        "{fields:?}"
    );
    for (_, name, fields) in &spans {
        for (field, value) in fields {
            assert!(
                !value.contains("span-secret-key") && !value.contains("VALUE-77e1"),
                "{name}.{field} = {value}"
            );
        }
    }
}
