//! `floor-proxy --upstream HOST:PORT`: the minimal hyper pass-through every gateway is
//! measured against. Accepts HTTP/1.1 on 127.0.0.1, forwards method, path, headers
//! and body (streamed) to the one upstream over a pooled hyper-util legacy client
//! (`TCP_NODELAY` on both sides), and streams the response back untouched. No parsing,
//! no routing, no logging: whatever a gateway costs beyond this is its own.
//!
//! Like the gateway it runs tokio's multi-threaded runtime with the default worker count
//! (one per CPU it may run on — one when pinned). Prints
//! `listening on http://127.0.0.1:PORT` once bound.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Parser, Debug)]
#[command(name = "floor-proxy", about = "A minimal hyper pass-through proxy")]
struct Cli {
    /// The upstream, `HOST:PORT` (plain HTTP).
    #[arg(long)]
    upstream: String,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Exit when stdin closes (the orchestrator's lifeline).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

struct Proxy {
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
}

type Body = Either<Incoming, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.exit_on_stdin_eof {
        modelway_bench::exit_when_stdin_closes();
    }
    let authority: Authority = cli.upstream.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cli.port, authority))
}

async fn serve(port: u16, authority: Authority) -> anyhow::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector);
    let proxy = Arc::new(Proxy { client, authority });
    modelway_bench::serve_http1(port, move |req| forward(proxy.clone(), req)).await?;
    Ok(())
}

async fn forward(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(proxy.authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(uri) => parts.uri = uri,
        Err(e) => return Ok(bad_gateway(&e.to_string())),
    }
    match proxy.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(Either::Left)),
        Err(e) => Ok(bad_gateway(&e.to_string())),
    }
}

fn bad_gateway(msg: &str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "floor-proxy: {msg}\n"
    )))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
