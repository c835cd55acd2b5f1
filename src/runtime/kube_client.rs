//! The Kubernetes client of `vigil run`: kube's client with a timeout on every request's
//! answer and every failed answer counted in `/metrics` and logged, each attempt apart.
//!
//! kube retries 429, 503 and 504 by itself (after `Retry-After` when the server gives
//! one); the layer here sits under that retry, so a throttled request that succeeds on its
//! second attempt still shows once. A watch whose stream breaks mid-way is counted too:
//! kube resumes such a watch silently (as a watch that ended), so only the body shows it.
//! Without the timeout a request the API server never
//! answers (a lost connection, an overloaded server) would hold its reconcile, and so its
//! Release, forever: kube sets none by default. Watches are not cut by it: a watch's answer
//! (its headers) comes at once, and only its body streams.

use super::metrics::Metrics;
use axum::http::{Request, Response};
use futures::future::BoxFuture;
use kube::client::{Body, ClientBuilder};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{BoxError, Layer, Service};

/// A client from the kubeconfig or the Pod's service account, as `kube::Client::try_default`
/// makes it, with [`Observe`] under kube's retry of 429, 503 and 504.
pub async fn client(timeout: Duration, metrics: Arc<Metrics>) -> Result<kube::Client, String> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        format!(
            "cannot connect to Kubernetes: {e}. Run inside a cluster, or point KUBECONFIG at a kubeconfig file"
        )
    })?;
    // kube's own retry sits inside its stack, where it would hide the attempts from the
    // observation: the same retry is added above it instead.
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot set up the Kubernetes client: {e}"))?;
    Ok(builder
        .with_layer(&ObserveLayer { timeout, metrics })
        // Retry clones the service it wraps: the buffer makes the boxed stack cloneable.
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(
            kube::client::retry::RetryPolicy::server_retry(),
        ))
        .build())
}

/// Adds [`Observe`] to a service.
#[derive(Clone)]
pub struct ObserveLayer {
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            timeout: self.timeout,
            metrics: self.metrics.clone(),
        }
    }
}

/// Gives up on an answer after `timeout`, and counts and logs every 429, 5xx, timeout and
/// connection failure (`vigil_kube_api_errors_total{kind}`), and every watch stream that
/// breaks (`vigil_kube_watch_errors_total{kind="dropped"}`).
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// No answer within the timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the Kubernetes API server within {0:?}")]
pub struct TimedOut(Duration);

impl<S, B> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<WatchBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<WatchBody<B>>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let what = format!("{} {}", request.method(), request.uri().path());
        let watch = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"));
        let answer = self.inner.call(request);
        let (timeout, metrics) = (self.timeout, self.metrics.clone());
        Box::pin(async move {
            let result = match tokio::time::timeout(timeout, answer).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(TimedOut(timeout)) as BoxError),
            };
            let kind = match &result {
                Ok(response) if response.status().as_u16() == 429 => Some("throttled"),
                Ok(response) if response.status().is_server_error() => Some("server_error"),
                Ok(_) => None,
                Err(e) if e.is::<TimedOut>() => Some("timeout"),
                Err(_) => Some("connection"),
            };
            if let Some(kind) = kind {
                metrics.kube_api_error(kind);
                match &result {
                    Ok(response) => {
                        let retry_after = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::warn!(
                            kind,
                            status = response.status().as_u16(),
                            retry_after,
                            "Kubernetes API error on {what}: HTTP {}",
                            response.status()
                        );
                    }
                    Err(e) => {
                        tracing::warn!(kind, "Kubernetes API error on {what}: {e}");
                    }
                }
            }
            result.map(|response| {
                response.map(|inner| WatchBody {
                    inner,
                    watch: watch.then_some((metrics, what)),
                })
            })
        })
    }
}

/// A response body; for a watch, an error while it streams (the connection broke) is
/// counted and logged once.
pub struct WatchBody<B> {
    inner: B,
    watch: Option<(Arc<Metrics>, String)>,
}

impl<B> http_body::Body for WatchBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled
            && let Some((metrics, what)) = self.watch.take()
        {
            metrics.watch_error("dropped");
            tracing::warn!(
                kind = "dropped",
                "a watch failed and restarts: the stream of {what} broke: {e}"
            );
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
