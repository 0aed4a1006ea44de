//! The upstream connection pool: per origin (scheme and authority), a list of
//! HTTP/1.1 connections and at most one shared HTTP/2 connection, over hyper's
//! connection API.
//!
//! Why not hyper-util's pooled client: it keys its pool by `(Scheme, Authority)` in a
//! SipHash map and hashes that key byte by byte three times per request (twice in the
//! checkout, once on return: ~3k instructions of the floor proxy's ~38k per request),
//! wraps every checkout in a future racing a speculative connect, and spawns a task to
//! put an HTTP/1 connection back once its body is read (whenever the body is not read
//! yet at the head, the usual case). Here an origin is found without a lock by
//! comparing its authority (a handful of origins per process), a connection is
//! taken with two atomic loads per candidate, and it goes back into its list as soon
//! as the request is handed to it: a connection still reading its answer is simply not
//! ready, and is passed over until it is.
//!
//! What it keeps from hyper-util: a request that an idle connection could not even
//! start (the server had closed it: hyper hands the request back) is sent again on a
//! fresh connection; idle connections older than the idle timeout are dropped, and at
//! most `max_idle` idle ones are kept per origin.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::TokioExecutor;

type Body = Full<Bytes>;
type H1 = http1::SendRequest<Body>;
type H2 = http2::SendRequest<Body>;

/// How often a request that an idle connection handed back unsent is tried again,
/// each time on a connection of its own: servers close idle connections whenever they
/// like, so the first reused one may be gone; a new one that refuses is an error.
const MAX_SENDS: usize = 3;

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// TCP or TLS establishment (or the HTTP handshake) failed.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// TCP + TLS establishment took longer than the attempt's connect timeout.
    ConnectTimeout(Duration),
    /// The request was sent (or could not be) and the connection failed.
    Http(hyper::Error),
}

/// The pool of one [`super::HttpClient`] (shared by its clones).
pub(crate) struct Pool<C> {
    connector: C,
    /// Every origin seen so far, read without a lock; the list only grows.
    origins: arc_swap::ArcSwap<Vec<Arc<Origin>>>,
    /// Held while an origin is added, so two first requests do not both add it.
    adding: Mutex<()>,
    idle_timeout: Duration,
    max_idle: usize,
}

/// One upstream origin's connections.
struct Origin {
    https: bool,
    authority: http::uri::Authority,
    /// HTTP/1.1 connections, in the order they were last handed a request (the most
    /// recent last); some may be busy reading an answer.
    h1: Mutex<Vec<Idle>>,
    /// The origin's HTTP/2 connection, when ALPN chose it.
    h2: Mutex<Option<H2>>,
}

struct Idle {
    tx: H1,
    since: Instant,
}

enum Conn {
    H1(H1),
    H2(H2),
}

impl<C> Pool<C>
where
    C: tower_service::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin
        + 'static,
    C::Future: Send,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(connector: C, idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            connector,
            origins: arc_swap::ArcSwap::default(),
            adding: Mutex::new(()),
            idle_timeout,
            max_idle,
        }
    }

    /// Sends `req` (an absolute URI) and returns the response head. A new connection's
    /// TCP + TLS establishment is bounded by `connect_timeout`; the wait for the head
    /// is the caller's to bound (dropping this future cancels the request, and hyper
    /// closes an HTTP/1 connection whose request was cancelled).
    pub(crate) async fn send(
        &self,
        mut req: http::Request<Body>,
        connect_timeout: Duration,
    ) -> Result<http::Response<Incoming>, SendError> {
        let origin = self.origin(req.uri())?;
        for _ in 0..MAX_SENDS {
            // One clock read per send: the checkout's expiry check and the checkin's
            // timestamp.
            let now = Instant::now();
            let (conn, reused) = match origin.checkout(now, self.idle_timeout) {
                Some(conn) => (conn, true),
                None => (self.connect(&origin, connect_timeout).await?, false),
            };
            let (sent, h2) = match conn {
                Conn::H1(mut tx) => {
                    origin_form(req.uri_mut());
                    let sent = tx.try_send_request(req);
                    // Back in the list at once: until its answer is read it is not
                    // ready, and a checkout passes it over.
                    origin.checkin(tx, now, self.max_idle);
                    (sent.await, false)
                }
                Conn::H2(mut tx) => {
                    origin.absolute_form(req.uri_mut());
                    (tx.try_send_request(req).await, true)
                }
            };
            match sent {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        if h2 {
                            // A shared connection that refuses new streams (going
                            // away) is not handed out again: the retry connects anew.
                            *origin.h2.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        }
                        req = unsent;
                    }
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        Err(SendError::Connect(
            "the upstream closed every connection before the request could be sent".into(),
        ))
    }

    /// The origin of `uri`, added on first use.
    fn origin(&self, uri: &http::Uri) -> Result<Arc<Origin>, SendError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(SendError::Connect("the URL's scheme is not http(s)".into())),
        };
        let Some(authority) = uri.authority() else {
            return Err(SendError::Connect("the URL has no host".into()));
        };
        let find = |list: &[Arc<Origin>]| {
            list.iter()
                .find(|o| o.https == https && o.authority.as_str() == authority.as_str())
                .cloned()
        };
        if let Some(o) = find(&self.origins.load()) {
            return Ok(o);
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let list = self.origins.load_full();
        if let Some(o) = find(&list) {
            return Ok(o);
        }
        let o = Arc::new(Origin {
            https,
            authority: authority.clone(),
            h1: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
        });
        let mut grown = Vec::with_capacity(list.len() + 1);
        grown.extend(list.iter().cloned());
        grown.push(o.clone());
        self.origins.store(Arc::new(grown));
        Ok(o)
    }

    /// A new connection to `origin`: TCP (+ TLS, ALPN choosing HTTP/2 or HTTP/1.1)
    /// within `limit`, then the HTTP handshake; its driver runs as its own task.
    async fn connect(&self, origin: &Origin, limit: Duration) -> Result<Conn, SendError> {
        let uri = http::Uri::builder()
            .scheme(if origin.https { "https" } else { "http" })
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| SendError::Connect(e.into()))?;
        let mut connector = self.connector.clone();
        let io = match tokio::time::timeout(limit, connector.call(uri)).await {
            Err(_) => return Err(SendError::ConnectTimeout(limit)),
            Ok(Err(e)) => return Err(SendError::Connect(e.into())),
            Ok(Ok(io)) => io,
        };
        if io.connected().is_negotiated_h2() {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(e.into()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *origin.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
            return Ok(Conn::H2(tx));
        }
        let (tx, conn) = http1::handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H1(tx))
    }
}

impl Origin {
    /// A connection ready for a request: the HTTP/2 one, or the most recently used
    /// ready HTTP/1.1 one (last in, first out: under light load the same one or two
    /// connections, warm in cache on both ends, serve everything, and the rest age out;
    /// first in, first out would rotate through every connection a burst opened).
    /// Closed and expired ones found on the way are dropped; busy ones stay.
    fn checkout(&self, now: Instant, idle_timeout: Duration) -> Option<Conn> {
        if self.https {
            let mut h2 = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
            match h2.as_ref() {
                Some(tx) if !tx.is_closed() => return Some(Conn::H2(tx.clone())),
                Some(_) => *h2 = None,
                None => {}
            }
        }
        let mut list = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let idle = &list[i];
            if idle.tx.is_closed() || now.saturating_duration_since(idle.since) > idle_timeout {
                list.remove(i);
            } else if idle.tx.is_ready() {
                return Some(Conn::H1(list.remove(i).tx));
            }
        }
        None
    }

    /// Puts a connection back (it may still be reading its answer). Past `max_idle`,
    /// the least recently used idle one is closed to make room; busy ones are never
    /// dropped (that would cut the answer they are reading), so the list can briefly
    /// hold more.
    fn checkin(&self, tx: H1, now: Instant, max_idle: usize) {
        let mut list = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= max_idle {
            if let Some(i) = list.iter().position(|idle| idle.tx.is_ready()) {
                list.remove(i);
            }
        }
        list.push(Idle { tx, since: now });
    }

    /// An HTTP/2 request needs the absolute URI (`:scheme`, `:authority`); one handed
    /// back by an HTTP/1.1 connection is in origin form.
    fn absolute_form(&self, uri: &mut http::Uri) {
        if uri.scheme().is_some() {
            return;
        }
        let mut parts = std::mem::take(uri).into_parts();
        parts.scheme = Some(if self.https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        parts.authority = Some(self.authority.clone());
        if let Ok(u) = http::Uri::from_parts(parts) {
            *uri = u;
        }
    }
}

/// `/path?query` for the request line, as HTTP/1.1 origin servers expect (RFC 9112
/// §3.2.1); the `host` header is already set by the request's builder.
fn origin_form(uri: &mut http::Uri) {
    if uri.scheme().is_none() {
        return;
    }
    *uri = match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => http::Uri::from(pq.clone()),
        _ => http::Uri::default(),
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// How a test origin answers.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200`, a 2-byte body, keep-alive.
        KeepAlive,
        /// As `KeepAlive`, then the server closes the connection without saying so.
        ThenClose,
        /// The head and a first chunk, then the body stays open for `hold`.
        Slow(Duration),
    }

    /// An HTTP/1.1 origin on 127.0.0.1: counts connections, records request heads.
    struct Origin {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        /// Each request head, with the number of the connection it came on.
        heads: Arc<Mutex<Vec<(usize, String)>>>,
    }

    async fn origin(answer: Answer) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let conn = a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, conn, answer, h.clone()));
            }
        });
        Origin {
            addr,
            accepted,
            heads,
        }
    }

    async fn serve(
        mut sock: TcpStream,
        conn: usize,
        answer: Answer,
        heads: Arc<Mutex<Vec<(usize, String)>>>,
    ) {
        let mut buf = Vec::new();
        loop {
            // One request: its head, then `content-length` bytes.
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + len {
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + len);
            heads.lock().unwrap().push((conn, head));
            match answer {
                Answer::KeepAlive | Answer::ThenClose => {
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if sock.write_all(ok).await.is_err() {
                        return;
                    }
                    if matches!(answer, Answer::ThenClose) {
                        return;
                    }
                }
                Answer::Slow(hold) => {
                    let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n";
                    if sock.write_all(head).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(hold).await;
                    if sock.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn pool() -> Pool<HttpConnector> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Pool::new(http, Duration::from_secs(90), 4)
    }

    use hyper_util::client::legacy::connect::HttpConnector;

    fn request(addr: std::net::SocketAddr) -> http::Request<Body> {
        let mut r = http::Request::new(Full::new(Bytes::from_static(b"{}")));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = format!("http://{addr}/v1/chat/completions?x=1")
            .parse()
            .unwrap();
        r.headers_mut()
            .insert(http::header::HOST, addr.to_string().parse().unwrap());
        r
    }

    async fn body(resp: http::Response<Incoming>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    const CONNECT: Duration = Duration::from_secs(5);

    /// `n` requests at once, each read to its end; every answer must be `ok`.
    async fn concurrently(pool: &Arc<Pool<HttpConnector>>, addr: std::net::SocketAddr, n: usize) {
        let sends: Vec<_> = (0..n)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let resp = pool.send(request(addr), CONNECT).await.unwrap();
                    body(resp).await
                })
            })
            .collect();
        for s in sends {
            assert_eq!(s.await.unwrap(), "ok");
        }
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection_in_origin_form() {
        let o = origin(Answer::KeepAlive).await;
        let pool = pool();
        for _ in 0..5 {
            let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(body(resp).await, "ok");
        }
        assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
        let heads = o.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 5);
        for (_, h) in &heads {
            assert!(
                h.starts_with("POST /v1/chat/completions?x=1 HTTP/1.1\r\n"),
                "{h}"
            );
            assert!(
                h.to_ascii_lowercase()
                    .contains(&format!("host: {}", o.addr)),
                "{h}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_reading_its_answer_is_passed_over_then_reused() {
        let o = origin(Answer::Slow(Duration::from_millis(300))).await;
        let pool = pool();
        let first = pool.send(request(o.addr), CONNECT).await.unwrap();
        // The first answer's body is still open: the second request needs its own
        // connection rather than queueing behind it.
        let second = pool.send(request(o.addr), CONNECT).await.unwrap();
        assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(body(first).await, "ok");
        assert_eq!(body(second).await, "ok");
        // Both read to their end: both idle again, neither a third connection.
        for _ in 0..3 {
            let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
            assert_eq!(body(resp).await, "ok");
        }
        assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_open_their_own_and_at_most_max_idle_stay() {
        let o = origin(Answer::Slow(Duration::from_millis(200))).await;
        let pool = Arc::new(pool());
        concurrently(&pool, o.addr, 6).await;
        assert_eq!(o.accepted.load(Ordering::SeqCst), 6);
        let origin = pool.origins.load()[0].clone();
        // Six were put back while busy (none dropped mid-answer); the next checkin
        // past `max_idle` (4) closes idle ones to make room.
        assert_eq!(origin.h1.lock().unwrap().len(), 6);
        let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
        assert_eq!(body(resp).await, "ok");
        assert_eq!(origin.h1.lock().unwrap().len(), 5);
        assert_eq!(
            o.accepted.load(Ordering::SeqCst),
            6,
            "an idle one was reused"
        );
    }

    #[tokio::test]
    async fn the_most_recently_used_connection_serves_after_a_burst() {
        let o = origin(Answer::Slow(Duration::from_millis(60))).await;
        let pool = Arc::new(pool());
        concurrently(&pool, o.addr, 3).await;
        assert_eq!(o.accepted.load(Ordering::SeqCst), 3);
        for _ in 0..4 {
            let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
            assert_eq!(body(resp).await, "ok");
        }
        let heads = o.heads.lock().unwrap().clone();
        let after: Vec<usize> = heads[3..].iter().map(|(c, _)| *c).collect();
        assert!(
            after.iter().all(|c| *c == after[0]),
            "sequential requests after the burst rotated over connections: {after:?}"
        );
        assert_eq!(o.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_an_error() {
        let o = origin(Answer::ThenClose).await;
        let pool = pool();
        for i in 0..5 {
            let resp = pool
                .send(request(o.addr), CONNECT)
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
            assert_eq!(body(resp).await, "ok");
        }
        assert_eq!(o.accepted.load(Ordering::SeqCst), 5);
        assert_eq!(o.heads.lock().unwrap().len(), 5, "nothing sent twice");
    }

    #[tokio::test]
    async fn refused_and_unparsable_targets_are_connect_errors() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool = pool();
        let err = pool.send(request(addr), CONNECT).await.unwrap_err();
        assert!(matches!(err, SendError::Connect(_)), "{err:?}");
        let mut r = request(addr);
        *r.uri_mut() = http::Uri::from_static("/relative");
        assert!(matches!(
            pool.send(r, CONNECT).await.unwrap_err(),
            SendError::Connect(_)
        ));
    }

    #[tokio::test]
    async fn an_idle_connection_past_the_idle_timeout_is_not_reused() {
        let o = origin(Answer::KeepAlive).await;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let pool = Pool::new(http, Duration::from_millis(50), 4);
        let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
        assert_eq!(body(resp).await, "ok");
        tokio::time::sleep(Duration::from_millis(120)).await;
        let resp = pool.send(request(o.addr), CONNECT).await.unwrap();
        assert_eq!(body(resp).await, "ok");
        assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    }
}
