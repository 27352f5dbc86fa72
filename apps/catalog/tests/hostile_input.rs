//! Input a new user's campaign of bad requests tried: NUL characters and
//! prices that used to be rounded, on PostgreSQL and SQLite alike (both must
//! give the same answers, byte for byte where a price is served).

mod common;

use catalog::CacheMode;
use common::{TestApp, TestDb, assert_problem, config};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

async fn app(db: &TestDb) -> TestApp {
    TestApp::start(db, &config(CacheMode::Hybrid, None, "catalog:")).await
}

/// POSTs a raw JSON body.
async fn post_raw(app: &TestApp, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/products"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST")
}

/// PUTs a raw JSON body.
async fn put_raw(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.http
        .put(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("PUT")
}

/// The fields a 422 names.
async fn named_fields(response: reqwest::Response) -> Vec<String> {
    let problem = assert_problem(response, 422).await;
    problem["errors"]
        .as_object()
        .expect("errors")
        .keys()
        .cloned()
        .collect()
}

async fn nul_is_422_naming_the_field(app: &TestApp) {
    let id = app.list().await[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/products/{id}");
    let cases = [
        (json!({"name": "\u{0}", "price": "1"}), "name"),
        (json!({"name": "\u{0}Leading", "price": "1"}), "name"),
        (json!({"name": "Inside\u{0}Name", "price": "1"}), "name"),
        (json!({"name": "Trailing\u{0}", "price": "1"}), "name"),
        (
            json!({"name": "Fine", "description": "\u{0}", "price": "1"}),
            "description",
        ),
        (
            json!({"name": "Fine", "description": "a\u{0}b", "price": "1"}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let post = app.post_json("/products", &body).await;
        assert_eq!(named_fields(post).await, [field], "POST {body}");
        let put = app.put_json(&path, &body).await;
        assert_eq!(named_fields(put).await, [field], "PUT {body}");
    }
    // Nothing was stored.
    assert_eq!(app.list().await.len(), 1000);
}

#[sqlx::test(migrations = false)]
async fn nul_characters_are_422_on_postgres(pool: PgPoolOptions, options: PgConnectOptions) {
    nul_is_422_naming_the_field(&app(&TestDb::postgres(pool, options)).await).await;
}

#[tokio::test]
async fn nul_characters_are_422_on_sqlite() {
    nul_is_422_naming_the_field(&app(&TestDb::sqlite()).await).await;
}

/// The served form of every accepted price, then every refused one.
async fn prices_are_exact(app: &TestApp) {
    let id = app.list().await[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/products/{id}");
    for (raw, served) in [
        (r#""0""#, "0.00"),
        ("0", "0.00"),
        (r#""0.00""#, "0.00"),
        ("-0", "0.00"),
        (r#""19.9""#, "19.90"),
        ("19.99", "19.99"),
        ("7", "7.00"),
        (r#""99999999.99""#, "99999999.99"),
    ] {
        let body = format!(r#"{{"name": "Priced", "price": {raw}}}"#);
        let response = post_raw(app, &body).await;
        assert_eq!(response.status(), 201, "{raw}");
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["price"], served, "POST {raw}");
        let location = format!("/products/{}", created["id"].as_str().unwrap());
        // Read back from the database (the first GET) and from the cache.
        for _ in 0..2 {
            let (status, fetched) = app.get_json(&location).await;
            assert_eq!((status, &fetched["price"]), (200, &json!(served)), "{raw}");
        }
        let response = put_raw(app, &path, &body).await;
        assert_eq!(response.status(), 200, "{raw}");
        let updated: Value = response.json().await.unwrap();
        assert_eq!(updated["price"], served, "PUT {raw}");
        assert!(app.list().await.iter().any(|p| p["price"] == served));
    }
    for raw in [
        r#""1.000000000000000000000000000001""#,
        "19.999999999999999",
        "1.001",
        r#""1_000""#,
        r#""1e2""#,
        "1e2",
        r#""+5""#,
        r#"".5""#,
        r#""5.""#,
        r#"" 5""#,
        r#""0x10""#,
        r#""-0""#,
        r#""-1""#,
        "-0.01",
        r#""100000000""#,
        "1e300",
        r#""NaN""#,
        "true",
        "null",
    ] {
        let body = format!(r#"{{"name": "Priced", "price": {raw}}}"#);
        assert_eq!(
            named_fields(post_raw(app, &body).await).await,
            ["price"],
            "POST {raw}"
        );
        assert_eq!(
            named_fields(put_raw(app, &path, &body).await).await,
            ["price"],
            "PUT {raw}"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn prices_are_exact_and_two_places_on_postgres(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    prices_are_exact(&app(&TestDb::postgres(pool, options)).await).await;
}

#[tokio::test]
async fn prices_are_exact_and_two_places_on_sqlite() {
    prices_are_exact(&app(&TestDb::sqlite()).await).await;
}
