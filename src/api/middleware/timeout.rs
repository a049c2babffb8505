//! The request deadline: a request still running after [`super::super::REQUEST_TIMEOUT`] is
//! answered with the JSON 503 `unavailable` and `Retry-After`, like every other error,
//! and its handler is dropped (an open primary transaction rolls back).
//!
//! tower-http's `TimeoutLayer` does the same with an empty body; this one answers in the
//! API's error format, and its future is a plain struct (no box per request).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::error::ApiError;

/// How long a client should wait before retrying a request that timed out.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Answers 503 past `deadline`.
#[derive(Clone, Copy)]
pub struct TimeoutLayer {
    deadline: Duration,
}

impl TimeoutLayer {
    pub fn new(deadline: Duration) -> TimeoutLayer {
        TimeoutLayer { deadline }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            deadline: self.deadline,
            inner,
        }
    }
}

/// The service beneath, with a deadline.
#[derive(Clone)]
pub struct Timeout<S> {
    deadline: Duration,
    inner: S,
}

impl<S> Service<Request> for Timeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TimeoutFuture {
            response: self.inner.call(req),
            deadline: tokio::time::sleep(self.deadline),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, or the 503 once the deadline passes.
    pub struct TimeoutFuture<F> {
        #[pin]
        response: F,
        #[pin]
        deadline: Sleep,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(response) = this.response.poll(cx) {
            return Poll::Ready(response);
        }
        ready!(this.deadline.poll(cx));
        tracing::warn!("request timed out");
        Poll::Ready(Ok(ApiError::Unavailable {
            message: "the request took too long; retry shortly",
            retry_after: RETRY_AFTER,
        }
        .into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn answer_after(wait: Duration) -> Response {
        let slow = tower::service_fn(move |_req: Request| async move {
            tokio::time::sleep(wait).await;
            Ok::<_, Infallible>(StatusCode::NO_CONTENT.into_response())
        });
        TimeoutLayer::new(Duration::from_secs(15))
            .layer(slow)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_deadline_gets_the_json_503_with_retry_after() {
        let response = answer_after(Duration::from_secs(16)).await;

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_within_the_deadline_gets_its_own_answer() {
        let response = answer_after(Duration::from_secs(14)).await;

        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}
