//! The ceiling `cargo xtask bench` measures the server against: a minimal axum route, in
//! the same framework, runtime and build profile as the server, that answers
//! `GET /ceiling` with a fixed JSON body held in memory (the bench gives it a contact as
//! the server serves it). No database, no auth, no middleware: what HTTP alone costs here.
//!
//! Usage: `ceiling BODY_FILE`; prints the address it listens on (a free loopback port).

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: ceiling BODY_FILE")?;
    let body = Bytes::from(std::fs::read(&path).with_context(|| format!("reading {path}"))?);
    let app = Router::new().route(
        "/ceiling",
        get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
