//! The upstream client over TLS, as real providers are reached: ALPN picks HTTP/2 when
//! the upstream offers it (one connection, requests multiplexed on it) and HTTP/1.1
//! otherwise (one connection reused by sequential requests); the certificate is checked
//! against the client's roots.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use modelway_core::HttpClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const CA: &[u8] = include_bytes!("tls/ca.pem");
const LEAF: &[u8] = include_bytes!("tls/leaf.pem");
const KEY: &[u8] = include_bytes!("tls/leaf.key");

/// A TLS origin on 127.0.0.1 offering `alpn`; answers each request with its HTTP
/// version. Returns its port and its accepted-connection count.
async fn tls_origin(alpn: &[&[u8]]) -> (u16, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(LEAF).unwrap()],
            PrivateKeyDer::from_pem_slice(KEY).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    // A little latency, so concurrent requests overlap.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        version,
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, accepted)
}

fn client() -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA).unwrap())
        .unwrap();
    HttpClient::with_root_certificates(roots)
}

fn request(port: u16) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::new(Full::new(Bytes::from_static(b"{}")));
    *r.method_mut() = http::Method::POST;
    *r.uri_mut() = format!("https://localhost:{port}/v1/chat/completions")
        .parse()
        .unwrap();
    r.headers_mut().insert(
        http::header::HOST,
        format!("localhost:{port}").parse().unwrap(),
    );
    r
}

async fn version_of(client: &HttpClient, port: u16) -> String {
    let resp = client
        .send(request(port), Duration::from_secs(10))
        .await
        .expect("the TLS upstream answers");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn alpn_h2_multiplexes_requests_on_one_connection() {
    let (port, accepted) = tls_origin(&[b"h2", b"http/1.1"]).await;
    let client = client();
    assert_eq!(version_of(&client, port).await, "HTTP/2.0");
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { version_of(&client, port).await })
        })
        .collect();
    for c in concurrent {
        assert_eq!(c.await.unwrap(), "HTTP/2.0");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one HTTP/2 connection");
}

#[tokio::test]
async fn alpn_http1_reuses_its_connection() {
    let (port, accepted) = tls_origin(&[b"http/1.1"]).await;
    let client = client();
    for _ in 0..4 {
        assert_eq!(version_of(&client, port).await, "HTTP/1.1");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    let (port, _) = tls_origin(&[b"h2", b"http/1.1"]).await;
    // The webpki roots do not know the test CA.
    let err = HttpClient::new()
        .send(request(port), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, modelway_core::ProviderError::Connect(ref m) if m.contains("certificate")),
        "{err:?}"
    );
}
