//! Real axum servers on 127.0.0.1:0 for the HTTP tests.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on 127.0.0.1:0 with `ConnectInfo` (so request contexts get
/// a `PeerAddr`); the server lives as long as the test's runtime.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, make).await;
    });
    addr
}
