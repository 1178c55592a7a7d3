//! A pass-through HTTP proxy in front of `processor serve` that holds
//! `GET /runs` until the test lets it go: the page's state before its
//! first data can then be looked at for as long as the test needs, with
//! no race against a fast server.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use super::WAIT;

/// The proxy; it stops when dropped.
pub struct GatedProxy {
    pub addr: SocketAddr,
    /// Set to true to let `GET /runs` through.
    release: watch::Sender<bool>,
    /// Counts the `GET /runs` requests that arrived (held or not).
    asked: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> GatedProxy {
        let (release, released) = watch::channel(false);
        let (asked_tx, asked) = watch::channel(0usize);
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.to_owned();
        let app = Router::new().fallback(move |req: Request| {
            let (client, upstream) = (client.clone(), upstream.clone());
            let (mut released, asked_tx) = (released.clone(), asked_tx.clone());
            async move {
                if req.method() == Method::GET && req.uri().path() == "/runs" {
                    asked_tx.send_modify(|n| *n += 1);
                    // Bounded: a test that forgets to release fails here.
                    let wait = released.wait_for(|open| *open);
                    if tokio::time::timeout(WAIT * 2, wait).await.is_err() {
                        return StatusCode::GATEWAY_TIMEOUT.into_response();
                    }
                }
                forward(&client, &upstream, req).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the proxy");
        });
        GatedProxy {
            addr,
            release,
            asked,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Waits (at most [`WAIT`]) until the page has asked for `GET /runs`.
    pub async fn runs_asked(&mut self) {
        let asked = self.asked.wait_for(|n| *n > 0);
        tokio::time::timeout(WAIT, asked)
            .await
            .expect("the page did not ask for GET /runs in time")
            .expect("the proxy is gone");
    }

    /// Lets every held and later `GET /runs` through.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `req` on to `upstream` and streams the answer back (the live
/// feed included).
async fn forward(client: &Client<HttpConnector, Body>, upstream: &str, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{upstream}{path}")
        .parse::<Uri>()
        .expect("an upstream URI");
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => res.map(Body::new),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
