//! The server of the loopback load test (`scripts/http-load.sh`, issue 9):
//! one trivial route, `GET /` answering `hello`, with or without
//! `goctx::http::RequestContextLayer`, so that the two runs differ in the
//! layer alone.
//!
//! ```sh
//! cargo run --release --features axum --example http_load_server -- --layer on
//! ```
//!
//! It binds 127.0.0.1 on a free port, prints `listening on 127.0.0.1:PORT`
//! as its first line, and serves until killed. The runtime is tokio's
//! current-thread one: the script pins the server to one core and the load
//! generator to the other, and one thread on one core keeps the two runs
//! comparable. Both servers use `into_make_service_with_connect_info`, so
//! the layer also stores the peer address, as it would in production.

use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use goctx::http::RequestContextLayer;

/// The handler of both servers: it reads nothing, not even the context.
async fn hello() -> &'static str {
    "hello"
}

/// `--layer on|off`, from the command line.
fn layer_from_args() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--layer", "on"] => Ok(true),
        ["--layer", "off"] => Ok(false),
        _ => Err(format!(
            "usage: http_load_server --layer on|off (got {args:?})"
        )),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let with_layer = layer_from_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut app = Router::new().route("/", get(hello));
        if with_layer {
            app = app.layer(RequestContextLayer::new(&goctx::background()));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        // The script waits for this line before it starts the load.
        stdout.flush()?;
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service).await?;
        Ok(())
    })
}
