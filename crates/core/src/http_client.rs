//! The one pooled upstream HTTP client of a process (HTTP/1.1 and HTTP/2, TLS via
//! rustls with the webpki roots), and helpers providers share to call it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::call::{Attempt, Timeouts};
use crate::error::ProviderError;
use crate::sse::{SseDecoder, SseEvent};

mod pool;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The connect timeout used when no attempt sets one (listing models).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The process-wide pooled HTTP client (keep-alive, HTTP/1.1 and HTTP/2, TLS with the
/// webpki roots), handed to every [`crate::provider::ProviderFactory::build`]. Cheap
/// to clone: clones share one pool (see `http_client/pool.rs` for why the pool is
/// modelway's own rather than hyper-util's).
///
/// Its sending methods are the provider kit's plumbing and are not part of the stable
/// API (they speak hyper's body type).
#[derive(Clone)]
pub struct HttpClient {
    pool: Arc<pool::Pool<Connector>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with keep-alive pooling and `TCP_NODELAY`, trusting the webpki roots.
    pub fn new() -> Self {
        Self::with_tls(rustls_config(webpki_roots()))
    }

    #[doc(hidden)]
    /// As [`Self::new`], trusting `roots` instead of the webpki roots (a private CA;
    /// the tests' own).
    pub fn with_root_certificates(roots: rustls::RootCertStore) -> Self {
        Self::with_tls(rustls_config(roots))
    }

    fn with_tls(tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        // Bounded per attempt by the pool instead.
        http.set_connect_timeout(None);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            pool: Arc::new(pool::Pool::new(https, Duration::from_secs(90), 256)),
        }
    }

    #[doc(hidden)]
    /// Sends a request; `timeout` bounds the wait for the response head (and a new
    /// connection's establishment, within at most 10 s).
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, ProviderError> {
        let sent = self.pool.send(req, timeout.min(DEFAULT_CONNECT_TIMEOUT));
        match tokio::time::timeout(timeout, sent).await {
            Err(_) => Err(ProviderError::Timeout(timeout)),
            Ok(r) => r.map_err(send_error),
        }
    }

    #[doc(hidden)]
    /// Sends an attempt's request: `t.connect` bounds a new connection (TCP + TLS).
    /// The wait for the head is bounded by the engine, around the whole attempt (one
    /// timer per attempt rather than one per phase); dropping the attempt drops this
    /// request, which closes its connection. Outside the engine, use [`Self::send`].
    pub async fn send_attempt(
        &self,
        req: http::Request<Full<Bytes>>,
        t: &Timeouts,
    ) -> Result<http::Response<Incoming>, ProviderError> {
        self.pool.send(req, t.connect).await.map_err(send_error)
    }
}

fn webpki_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn rustls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// A failed send: a connect that ran out of time is a timeout, anything else a
/// connect failure (nothing of the answer arrived).
fn send_error(e: pool::SendError) -> ProviderError {
    match e {
        pool::SendError::ConnectTimeout(d) => ProviderError::ConnectTimeout(d),
        pool::SendError::Connect(e) => ProviderError::Connect(error_chain(&*e)),
        pool::SendError::Http(e) => ProviderError::Connect(error_chain(&e)),
    }
}

/// The error and its sources, joined, for a useful one-line message.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Reads a whole response body, bounded by `timeout`.
pub async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, ProviderError> {
    match tokio::time::timeout(timeout, body_bytes(body)).await {
        Err(_) => Err(ProviderError::Timeout(timeout)),
        Ok(Err(e)) => Err(ProviderError::StreamCut(error_chain(&e))),
        Ok(Ok(b)) => Ok(b),
    }
}

/// A body's bytes, read to its end (trailers ignored). A body of one data frame, as a
/// JSON body usually is, comes back as that frame, without the list `collect()`
/// builds around it; several are joined once.
pub async fn body_bytes<B>(body: B) -> Result<Bytes, B::Error>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match joined.as_mut() {
            Some(j) => j.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let rest = usize::try_from(body.size_hint().lower()).unwrap_or(0);
                let mut j = bytes::BytesMut::with_capacity(first.len() + data.len() + rest);
                j.extend_from_slice(&first);
                j.extend_from_slice(&data);
                joined = Some(j);
            }
        }
    }
    Ok(joined.map_or(first, bytes::BytesMut::freeze))
}

/// The `user-agent` modelway sends upstream.
pub const USER_AGENT: &str = concat!("modelway/", env!("CARGO_PKG_VERSION"));

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A request to an upstream, built in place: every header name is a constant or was
/// validated when the provider was built, so nothing is parsed or checked again on the
/// request path.
///
/// It carries `host` (the URI's authority) and `user-agent`; with a `body`,
/// `content-type: application/json` and `accept` (`text/event-stream` when `stream`,
/// else JSON); the client's `traceparent`
/// when a `call` is given; then what `provider_headers` adds (credentials, version
/// headers, attribution); then the provider's `configured` headers, appended last.
/// `attempt` is a chat or an embeddings attempt (a request with none, as a model
/// listing is, passes `None::<&Attempt<'_>>`).
pub fn upstream_request<R>(
    method: http::Method,
    uri: http::Uri,
    body: Option<Bytes>,
    stream: bool,
    attempt: Option<&Attempt<'_, R>>,
    configured: &[(http::HeaderName, http::HeaderValue)],
    provider_headers: impl FnOnce(&mut http::HeaderMap),
) -> http::Request<Full<Bytes>> {
    use http::header::{ACCEPT, CONTENT_TYPE};
    use http::HeaderValue;
    let has_body = body.is_some();
    // `host`, from the URI as it is: left unset, hyper-util's client formats
    // `host:port` anew on every request (~1k instructions and an allocation).
    let host = uri.authority().and_then(|a| {
        let a = a.as_str();
        HeaderValue::from_str(a.rsplit_once('@').map_or(a, |(_, host)| host)).ok()
    });
    let mut r = http::Request::new(Full::new(body.unwrap_or_default()));
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    let h = r.headers_mut();
    h.reserve(7 + configured.len());
    if let Some(host) = host {
        h.insert(http::header::HOST, host);
    }
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    if has_body {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
    }
    provider_headers(h);
    if let Some(attempt) = attempt {
        if let Some(tp) = attempt.traceparent() {
            h.append(TRACEPARENT, tp);
            if let Some(ts) = attempt.header(TRACESTATE.as_str()) {
                h.append(TRACESTATE, ts.clone());
            }
        }
    }
    for (n, v) in configured {
        h.append(n.clone(), v.clone());
    }
    r
}

/// Reads a non-success response into [`ProviderError::Status`] like [`status_error`],
/// then lets the provider `translate` it (typically its error body into OpenAI's shape).
pub async fn status_error_with(
    resp: http::Response<Incoming>,
    timeout: Duration,
    translate: impl FnOnce(u16, Bytes, Option<Duration>) -> ProviderError,
) -> ProviderError {
    match status_error(resp, timeout).await {
        ProviderError::Status {
            status,
            body,
            retry_after,
        } => translate(status, body, retry_after),
        other => other,
    }
}

/// Whether a response says its body is JSON (`application/json`, any parameters): an
/// upstream that was asked for a stream and answers JSON is reporting an error.
pub fn is_json<B>(resp: &http::Response<B>) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Turns a non-success response into [`ProviderError::Status`], reading its body and
/// its retry hints (`retry-after-ms`, `retry-after` in seconds).
pub async fn status_error(resp: http::Response<Incoming>, timeout: Duration) -> ProviderError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = read_body(resp.into_body(), timeout)
        .await
        .unwrap_or_default();
    ProviderError::Status {
        status,
        body,
        retry_after,
    }
}

/// Parses `retry-after-ms` or `retry-after` (seconds).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Decodes a response body as SSE, yielding events as soon as each is complete.
/// A body error yields one `StreamCut` and ends.
pub fn sse_events(body: Incoming) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    SseEvents {
        body,
        decoder: SseDecoder::new(),
        done: false,
    }
}

/// The stream [`sse_events`] returns, polled by hand: a streamed answer has hundreds of
/// events, and an `unfold` would move this state into and out of a new future for
/// each of them.
struct SseEvents {
    body: Incoming,
    decoder: SseDecoder,
    done: bool,
}

impl Stream for SseEvents {
    type Item = Result<SseEvent, ProviderError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use hyper::body::Body as _;
        use std::task::Poll;
        let st = self.get_mut();
        loop {
            if let Some(ev) = st.decoder.next_event() {
                return Poll::Ready(Some(Ok(ev)));
            }
            if st.done {
                return Poll::Ready(st.decoder.finish().map(Ok));
            }
            match std::pin::Pin::new(&mut st.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => st.done = true,
                Poll::Ready(Some(Err(e))) => {
                    st.done = true;
                    st.decoder = SseDecoder::new();
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(error_chain(&e)))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        st.decoder.push(data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::stream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    fn body(
        frames: Vec<Result<Frame<Bytes>, &'static str>>,
    ) -> StreamBody<impl Stream<Item = Result<Frame<Bytes>, &'static str>>> {
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn body_bytes_keeps_one_frame_and_joins_several() {
        let one = Bytes::from_static(b"{\"a\":1}");
        let got = body_bytes(body(vec![Ok(Frame::data(one.clone()))]))
            .await
            .unwrap();
        assert_eq!(got, one);
        assert_eq!(got.as_ptr(), one.as_ptr(), "one frame is not copied");

        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        let got = body_bytes(body(vec![
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
            Ok(Frame::trailers(trailers)),
            Ok(Frame::data(Bytes::from_static(b"e"))),
        ]))
        .await
        .unwrap();
        assert_eq!(got, Bytes::from_static(b"abcde"));

        assert_eq!(body_bytes(body(vec![])).await.unwrap(), Bytes::new());
        let err = body_bytes(body(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("cut"),
        ]))
        .await
        .unwrap_err();
        assert_eq!(err, "cut");
    }
}
