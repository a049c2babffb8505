//! The contract: `/api/openapi.json` is a valid OpenAPI 3 document listing every route, and
//! every route it lists is served; `/api/docs/` is the Swagger UI page.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestApp, TestDb};

/// Routes this branch serves; every one must be documented.
const EXPECTED_PATHS: &[&str] = &[
    "/api/health",
    "/api/health/db",
    "/api/admin/resync",
    "/api/admin/sync",
    "/api/predictions/{productId}",
    "/api/reorders",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_every_listed_route_is_served() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    // Act
    let resp = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let raw: Value = resp.json().await.unwrap();

    // Assert: OpenAPI 3, readable by utoipa's own model.
    assert!(
        raw["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        raw["openapi"]
    );
    let doc: utoipa::openapi::OpenApi = serde_json::from_value(raw.clone()).expect("valid OpenAPI");
    let documented: Vec<&String> = doc.paths.paths.keys().collect();
    for path in EXPECTED_PATHS {
        assert!(
            documented.iter().any(|p| p == path),
            "{path} not in {documented:?}"
        );
    }
    assert!(raw["components"]["schemas"]["PredictionView"].is_object());
    assert!(raw["components"]["schemas"]["ReordersView"].is_object());

    // Every documented operation reaches a handler (no router 404/405), here and under
    // /api/v1. Unauthenticated calls stop at 401 for protected routes, which is enough.
    for (path, item) in raw["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_ascii_uppercase().parse::<reqwest::Method>() else {
                continue;
            };
            if method == reqwest::Method::OPTIONS {
                continue;
            }
            let concrete = fill_params(path);
            for prefixed in [concrete.clone(), concrete.replacen("/api/", "/api/v1/", 1)] {
                let status = app
                    .http
                    .request(method.clone(), app.url(&prefixed))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {prefixed} is documented but answered {status}"
                );
            }
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    let resp = app.http.get(app.url("/api/docs/")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.to_ascii_lowercase().contains("swagger"), "{html}");
    app.stop().await;
}

/// `/api/x/{id}` → `/api/x/<a nil uuid>`.
fn fill_params(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_carry_their_enforced_bounds_optional_parameters_are_not_nullable_creates_have_location()
 {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    let doc: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let schemas = &doc["components"]["schemas"];
    for (schema, field, minimum) in [
        ("ProductView", "reorder_quantity", 1),
        ("NewProduct", "reorder_quantity", 1),
        ("ProductPatch", "reorder_quantity", 1),
        ("NewProduct", "price_cents", 0),
        ("NewOrder", "quantity", 1),
        ("OrderPatch", "unit_price_cents", 0),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(property["format"], "int32", "{schema}.{field}: {property}");
        assert_eq!(property["minimum"], minimum, "{schema}.{field}: {property}");
    }
    assert_eq!(
        schemas["NewOrder"]["properties"]["quantity"]["maximum"],
        1_000_000
    );
    let parameters = doc["paths"]["/api/products"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let token = parameters
        .iter()
        .find(|p| p["name"] == "X-Sync-Token")
        .unwrap();
    assert_eq!(
        token["schema"]["type"], "string",
        "an optional header is absent, never null: {token}"
    );
    for path in ["/api/products", "/api/orders"] {
        let created = &doc["paths"][path]["post"]["responses"]["201"]["headers"];
        assert!(created["Location"].is_object(), "{path}: {created}");
    }
}
