//! A small JSON client for the data routes of a [`TestApp`], acting as one user.

use std::sync::Mutex;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::{TestApp, TestDb};

/// One user's view of an edge. Like a well-behaved client, it sends the sync token of its
/// last write on its reads (`X-Sync-Token`), so it always reads its own writes.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub token: String,
    last_write: Mutex<Option<String>>,
}

/// An answer: status, headers and the JSON body (`Value::Null` when there is none).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// `error.code` and `error.field` of an error body.
    pub fn error(&self) -> (String, Option<String>) {
        let e = &self.body["error"];
        assert!(e.is_object(), "not a JSON error body: {self:?}");
        (
            e["code"].as_str().unwrap_or_default().to_owned(),
            e["field"].as_str().map(str::to_owned),
        )
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an id").to_owned()
    }
}

impl<'a> Api<'a> {
    pub fn new(app: &'a TestApp, user: &str) -> Api<'a> {
        Api {
            app,
            token: app.token(user, &[]),
            last_write: Mutex::new(None),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> Reply {
        let mut request = self.request(Method::GET, path);
        if let Some(token) = self.last_write.lock().unwrap().clone() {
            request = request.header("x-sync-token", token);
        }
        send(request).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.write(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.write(self.request(Method::PATCH, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.write(self.request(Method::DELETE, path)).await
    }

    async fn write(&self, request: RequestBuilder) -> Reply {
        let reply = send(request).await;
        if let Some(token) = reply.header("x-sync-token") {
            *self.last_write.lock().unwrap() = Some(token);
        }
        reply
    }

    /// Creates a product named `name`; panics unless 201.
    pub async fn product(&self, name: &str) -> String {
        let reply = self
            .post("/api/products", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.id()
    }

    /// Every item of a list, following `next_cursor` with pages of `limit`.
    pub async fn walk(&self, path: &str, limit: u32) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let page = self.get(&url).await;
            assert_eq!(page.status, StatusCode::OK, "{page:?}");
            let batch = page.body["items"].as_array().unwrap().clone();
            assert!(batch.len() <= limit as usize);
            items.extend(batch);
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Rows in `table` on the primary.
pub async fn count(db: &TestDb, table: &str) -> i64 {
    db.client
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0)
}
