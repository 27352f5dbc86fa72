//! The HTTP layer under hostile input: metrics labels stay in a closed set
//! whatever methods clients invent.

mod common;

use catalog::CacheMode;
use common::{TestApp, TestDb, config};

async fn app() -> TestApp {
    TestApp::start(
        &TestDb::sqlite(),
        &config(CacheMode::Hybrid, None, "catalog:"),
    )
    .await
}

#[tokio::test]
async fn metrics_labels_stay_in_a_closed_set_under_random_methods() {
    let app = app().await;
    app.list().await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..2_000 {
        let token = format!("M{}", uuid::Uuid::now_v7().simple()).to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(token.as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/products" } else { "/nope" };
        let response = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        tokens.push(token);
    }
    let after = app.get("/metrics").await.text().await.unwrap();
    for token in tokens.iter().step_by(97) {
        let line = after.lines().find(|l| l.contains(token.as_str()));
        assert!(line.is_none(), "{token} became a label: {line:?}");
    }
    assert!(
        after.contains(r#"method="other""#),
        "unknown methods are counted as other"
    );
    // 2,000 distinct methods used to add 2,000 series of ~20 lines each.
    assert!(
        after.len() < before.len() + 16 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
}
