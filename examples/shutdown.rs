//! Graceful shutdown with long-lived streams: `cargo run --example shutdown`.
//!
//! An open server-sent-events stream or WebSocket keeps a server's
//! graceful shutdown from ever finishing (hyper#2787, axum#2673). Here a
//! signal ends the server's context, which ends every request context, so
//! the SSE stream (`ctx.stream(..)`) and the WebSocket task (watching its
//! context) end on their own; `drained()` then says when every context the
//! server handed out is gone.
//!
//! ```text
//! cargo run --example shutdown
//! curl -N http://127.0.0.1:3000/events     # a tick every 100 ms
//! kill -TERM <pid>                          # or Ctrl+C: the stream ends, the server exits
//! ```
//!
//! `--grace` bounds the wait for connections and for the drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use clap::Parser;
use goctx::Ctx;
use goctx::http::RequestContextLayer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let Args { addr, grace } = Args::parse();
    // Ends on SIGINT or SIGTERM, with the signal as its cause.
    let (server_ctx, _stop) = goctx::tokio::signal_context(&goctx::background());
    let app = Router::new()
        .route("/events", get(events))
        .route("/ws", get(socket))
        .with_state(server_ctx.clone())
        .layer(RequestContextLayer::new(&server_ctx));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);

    // Stops accepting once the signal arrives, then waits for open
    // connections: the streams end with their contexts.
    let shutdown = server_ctx.done_owned();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
    });
    let served = tokio::spawn(async move { serve.await });
    server_ctx.done().await;
    println!("shutting down: {}", cause(&server_ctx));
    match tokio::time::timeout(grace, served).await {
        Ok(_) => println!("connections closed"),
        Err(_) => println!("connections still open after {grace:?}; closing them"),
    }
    // Every request context, and the WebSocket's, is gone: nothing the
    // server started still runs.
    match tokio::time::timeout(grace, server_ctx.drained()).await {
        Ok(()) => println!("drained"),
        Err(_) => println!("not drained after {grace:?}"),
    }
    Ok(())
}

/// A tick every 100 ms until the request context ends (client gone, or the
/// server shutting down).
async fn events(ctx: Ctx) -> impl IntoResponse {
    let ticks = futures::stream::unfold(0_u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let event = Event::default().data(format!("tick {n}"));
        Some((Ok::<_, Infallible>(event), n + 1))
    });
    Sse::new(ctx.stream(ticks))
}

/// A WebSocket that sends a tick every 100 ms until the server shuts down.
///
/// The request context ends as soon as the `101 Switching Protocols`
/// answer is complete, so the socket gets a context of its own: the
/// request's values (id, trace) with the server's lifetime.
async fn socket(
    ws: WebSocketUpgrade,
    ctx: Ctx,
    State(server_ctx): State<Ctx>,
) -> impl IntoResponse {
    let (socket_ctx, stop) = goctx::merge(&goctx::without_cancel(&ctx), &server_ctx);
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let mut n = 0_u64;
        loop {
            let tick = tokio::time::sleep(Duration::from_millis(100));
            match socket_ctx.run(tick).await {
                Ok(()) => {
                    n += 1;
                    if socket
                        .send(Message::text(format!("tick {n}")))
                        .await
                        .is_err()
                    {
                        break; // the client left
                    }
                }
                Err(_) => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
        }
        drop((socket_ctx, stop));
    })
}

fn cause(ctx: &Ctx) -> String {
    ctx.cause().map(|c| c.to_string()).unwrap_or_default()
}

/// Command line of the example.
#[derive(Parser, Debug)]
#[command(about = "graceful shutdown with an open SSE stream and WebSocket, ended by a signal")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// How long to wait for open connections, then for the drain.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    grace: Duration,
}
