//! Graceful shutdown with long-lived streams (issue 17): `examples/shutdown.rs`
//! with an open server-sent-events stream and an open WebSocket gets
//! SIGTERM. Both streams end, the server drains and exits within its grace
//! period plus a second. Servers bind 127.0.0.1:0; every wait is bounded.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::servers::{ExampleServer, Lines, Stderr};

/// Generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Opens `GET /events` and reads up to the first event.
fn open_sse(addr: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "SSE closed early");
        if line.starts_with("data: tick") {
            return reader;
        }
    }
}

/// Opens `GET /ws` as a WebSocket and reads up to the first text frame.
fn open_ws(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the upgrade answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(next_frame(&mut stream), Some(1), "a text frame first");
    stream
}

/// The opcode of the next frame from the server (unmasked, as servers
/// send), its payload skipped; `None` at the end of the connection.
fn next_frame(stream: &mut TcpStream) -> Option<u8> {
    let mut header = [0u8; 2];
    if stream.read_exact(&mut header).is_err() {
        return None;
    }
    let len = match header[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).ok()?;
            usize::from(u16::from_be_bytes(ext))
        }
        127 => panic!("no frame here is that long"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some(header[0] & 0x0f)
}

#[test]
fn sigterm_ends_the_open_streams_and_the_server_drains_and_exits() {
    let mut command = Command::new(common::example("shutdown"));
    command.args(["--addr", "127.0.0.1:0", "--grace", "1s"]);
    let mut server = ExampleServer::start(command, Stderr::Inherit, Lines::Keep);
    let mut sse = open_sse(&server.addr);
    let mut ws = open_ws(&server.addr);

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signaled = Instant::now();

    // The WebSocket: ticks, then a close frame (or the end of the
    // connection), well before the test's patience runs out.
    let mut ws_ended = false;
    while let Some(opcode) = next_frame(&mut ws) {
        if opcode == 8 {
            ws_ended = true;
            break;
        }
    }
    assert!(ws_ended, "the WebSocket got a close frame");
    // The SSE stream: its body ends (the last chunk) and the connection
    // closes.
    let mut rest = String::new();
    sse.read_to_string(&mut rest).expect("the SSE body ends");
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "the chunked body ended: {rest:?}"
    );

    // The server exits on its own, within its grace period plus a second.
    let exit = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(signaled.elapsed() < PATIENCE, "the server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signaled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?}, more than the 1 s grace plus 1 s"
    );
    let mut lines = Vec::new();
    while let Ok(line) = server.next_line(Duration::from_millis(100)) {
        lines.push(line);
    }
    assert_eq!(
        lines,
        [
            "shutting down: context canceled: received SIGTERM",
            "connections closed",
            "drained",
        ]
    );
}

#[test]
fn the_guide_shows_the_example_as_it_is() {
    let example = include_str!("../../examples/shutdown.rs");
    let guide = include_str!("../../docs/http.md");
    // Everything after the example's header comment, as the guide shows it.
    let code = example
        .split_once("\nuse std::convert::Infallible;")
        .map(|(_, rest)| format!("use std::convert::Infallible;{rest}"))
        .unwrap();
    assert!(
        guide.contains(&code),
        "docs/http.md's graceful-shutdown code differs from examples/shutdown.rs"
    );
}
