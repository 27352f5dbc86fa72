//! The spans of HybridCache: the miss path is traced (where the value came
//! from, the factory, L2), a hit is not, and no span carries a key or a value.

mod common;

use std::sync::{Arc, Mutex};

use strata_cache::HybridCache;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

use common::{DbDown, Product, memory_l2, options};

/// Every span opened, as its id, its name and its fields (values recorded
/// later included).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

/// A span's id, name and fields.
type Opened = (u64, String, Vec<(String, String)>);

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

const SECRET: &str = "VALUE-3c7a";

#[tokio::test]
async fn the_miss_path_is_traced_without_keys_or_values_and_a_hit_is_not() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let cache = HybridCache::builder()
        .distributed(memory_l2())
        .name("products")
        .build();
    let factory = |_| async {
        Ok::<_, DbDown>(Product {
            id: 1,
            name: SECRET.into(),
        })
    };
    cache
        .get_or_create("secret-key-91", &options(), factory)
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    let miss: Vec<_> = spans.0.lock().unwrap().drain(..).collect();
    let names: Vec<&str> = miss.iter().map(|(_, n, _)| n.as_str()).collect();
    for expected in [
        "strata.get_or_create",
        "strata.l2.get",
        "strata.factory",
        "strata.l2.fill",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let (_, _, fields) = miss
        .iter()
        .find(|(_, n, _)| n == "strata.get_or_create")
        .unwrap();
    assert!(
        fields.contains(&("cache".into(), "products".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("layer".into(), "\"factory\"".into())),
        "{fields:?}"
    );
    for (_, name, fields) in &miss {
        for (field, value) in fields {
            assert!(
                !value.contains(SECRET) && !value.contains("secret-key"),
                "{name}.{field} = {value}"
            );
        }
    }
    // A hit: no span at all.
    cache
        .get_or_create("secret-key-91", &options(), |_| async {
            Ok::<_, DbDown>(Product {
                id: 2,
                name: String::new(),
            })
        })
        .await
        .unwrap();
    assert!(spans.0.lock().unwrap().is_empty(), "a hit makes no span");
}
