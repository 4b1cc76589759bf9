//! Outgoing `wasi:http` of one call: a request leaves only for an origin the plan
//! granted, over a connection medic opens itself to an address that origin resolved
//! to when the call began, with the operator's credentials for that origin attached
//! (the plugin never sees them). Redirects are the plugin's business: medic never
//! follows one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::OperatorConfig;
use super::wasi::Caller;
use crate::plan::{Origin, origin};

/// An origin the plan grants, with the addresses it resolved to at call start.
#[derive(Debug, Clone)]
pub(super) struct GrantedOrigin {
    pub origin: Origin,
    pub addrs: HashSet<SocketAddr>,
}

/// Parses and resolves the call's granted origins (rendered `scheme://host[:port]`).
pub(super) async fn resolve_origins(grants: &[String]) -> Result<Vec<GrantedOrigin>, String> {
    let mut granted = Vec::with_capacity(grants.len());
    for text in grants {
        let origin = origin(text).map_err(|e| format!("granted http origin: {e}"))?;
        let addrs = lookup(&origin.authority())
            .await
            .map_err(|e| format!("resolving the granted http origin `{origin}`: {e}"))?;
        granted.push(GrantedOrigin {
            origin,
            addrs: addrs.into_iter().collect(),
        });
    }
    Ok(granted)
}

/// Resolves `host:port` on the host. Tests can script the answers for a name, so a
/// name that resolves elsewhere later in the call can be simulated.
async fn lookup(authority: &str) -> std::io::Result<Vec<SocketAddr>> {
    #[cfg(test)]
    if let Some(addrs) = scripted::answer(authority) {
        return Ok(addrs);
    }
    Ok(tokio::net::lookup_host(authority).await?.collect())
}

/// The `wasi:http` hooks of one call.
pub(super) struct Hooks {
    pub caller: Caller,
    pub origins: Arc<Vec<GrantedOrigin>>,
    pub operator: Arc<OperatorConfig>,
    /// When the call's wall-clock timeout ends: no wait of a request lasts longer.
    pub deadline: Instant,
}

/// Why medic did not send a request; each says what to do about it.
struct Refusal {
    code: HttpError,
    message: String,
}

/// Waits of one request that no options were given for are bounded by the call's
/// deadline only; these are the ceilings otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

impl Hooks {
    /// The granted origin `uri` addresses, or why it is refused.
    fn admit(&self, uri: &http::Uri) -> Result<&GrantedOrigin, Refusal> {
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => "http",
            Some(s) if *s == Scheme::HTTPS => "https",
            other => {
                return Err(Refusal {
                    code: HttpError::HttpRequestDenied,
                    message: format!(
                        "request to `{uri}` refused: scheme {other:?} is not http or https"
                    ),
                });
            }
        };
        let host = uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let wanted = Origin {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        };
        self.origins
            .iter()
            .find(|g| {
                g.origin.scheme == wanted.scheme
                    && g.origin.host.eq_ignore_ascii_case(&wanted.host)
                    && g.origin.port == wanted.port
            })
            .ok_or_else(|| {
                let granted: Vec<String> =
                    self.origins.iter().map(|g| g.origin.to_string()).collect();
                Refusal {
                    code: HttpError::HttpRequestDenied,
                    message: format!(
                        "HTTP request to origin `{wanted}` refused: the plan does not grant it to \
                         plugin `{}` (granted: {}); add `{wanted}` to the step's \
                         `grants: {{ http: [...] }}` for this plugin",
                        self.caller.plugin,
                        if granted.is_empty() {
                            "none".to_string()
                        } else {
                            granted.join(", ")
                        }
                    ),
                }
            })
    }

    /// The operator's credential headers for `origin`, read from their secrets now.
    fn credentials(&self, origin: &Origin) -> Result<Vec<(HeaderName, HeaderValue)>, Refusal> {
        let refused = |message: String| Refusal {
            code: HttpError::InternalError(Some(message.clone())),
            message,
        };
        let mut headers = Vec::new();
        for c in &self.operator.http.credentials {
            if c.origin() != *origin {
                continue;
            }
            let value = super::read_secret(self.operator.secrets_dir.as_deref(), &c.secret)
                .map_err(|e| {
                    refused(format!(
                        "HTTP request to origin `{origin}` not sent: its credential \
                         ([[http.credentials]] header {}) cannot be read: {e}",
                        c.header
                    ))
                })?;
            let name = HeaderName::from_bytes(c.header.as_bytes()).map_err(|e| {
                refused(format!(
                    "HTTP request to origin `{origin}` not sent: [[http.credentials]] header \
                     `{}` is not a header name: {e}",
                    c.header
                ))
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                refused(format!(
                    "HTTP request to origin `{origin}` not sent: secret `{}` of its \
                     [[http.credentials]] is not a valid header value (one line of visible ASCII)",
                    c.secret
                ))
            })?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn refuse(&self, refusal: Refusal) -> HttpError {
        let c = &self.caller;
        tracing::warn!(
            plugin = %c.plugin,
            run_id = %c.run_id,
            step_id = %c.step_id,
            attempt = c.attempt,
            "{}",
            refusal.message
        );
        refusal.code
    }

    fn left(&self, wanted: Option<Duration>) -> Duration {
        wanted
            .unwrap_or(DEFAULT_WAIT)
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let admitted = self.admit(request.uri()).and_then(|granted| {
            let credentials = self.credentials(&granted.origin)?;
            Ok((granted.clone(), credentials))
        });
        let (granted, credentials) = match admitted {
            Ok(ok) => ok,
            Err(refusal) => {
                let code = self.refuse(refusal);
                return Box::new(async move { Err(code) });
            }
        };
        // The guest's header of the same name never reaches the server.
        for (name, value) in credentials {
            request.headers_mut().insert(name, value);
        }
        let options = options.unwrap_or_default();
        let connect_timeout = self.left(options.connect_timeout);
        let first_byte_timeout = self.left(options.first_byte_timeout);
        let between_bytes_timeout = self.left(options.between_bytes_timeout);
        let caller = self.caller.clone();
        Box::new(async move {
            let refuse = |refusal: Refusal| {
                tracing::warn!(
                    plugin = %caller.plugin,
                    run_id = %caller.run_id,
                    step_id = %caller.step_id,
                    attempt = caller.attempt,
                    "{}",
                    refusal.message
                );
                refusal.code
            };
            let addrs = checked_addrs(&granted).await.map_err(refuse)?;
            let stream = connect(&addrs, connect_timeout).await?;
            let origin = &granted.origin;
            let io: Box<dyn Stream> = if origin.scheme == "https" {
                let name = server_name(&origin.host).map_err(|e| {
                    refuse(Refusal {
                        code: HttpError::TlsCertificateError,
                        message: format!(
                            "origin `{origin}`: `{}` is no TLS name: {e}",
                            origin.host
                        ),
                    })
                })?;
                let tls = tokio_rustls::TlsConnector::from(tls_config());
                let stream = tokio::time::timeout(connect_timeout, tls.connect(name, stream))
                    .await
                    .map_err(|_| HttpError::ConnectionTimeout)?
                    .map_err(HttpError::Tls)?;
                Box::new(stream)
            } else {
                Box::new(stream)
            };
            send(
                request,
                io,
                connect_timeout,
                first_byte_timeout,
                between_bytes_timeout,
            )
            .await
        })
    }
}

/// The addresses `granted`'s name resolves to now that it also resolved to when the
/// call began: a name that moved elsewhere meanwhile is not followed there.
async fn checked_addrs(granted: &GrantedOrigin) -> Result<Vec<SocketAddr>, Refusal> {
    let origin = &granted.origin;
    let now = lookup(&origin.authority()).await.map_err(|e| Refusal {
        code: HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        },
        message: format!("HTTP request to origin `{origin}`: resolving it failed: {e}"),
    })?;
    let (checked, elsewhere): (Vec<SocketAddr>, Vec<SocketAddr>) =
        now.into_iter().partition(|a| granted.addrs.contains(a));
    if checked.is_empty() {
        let shown = |addrs: &mut dyn Iterator<Item = &SocketAddr>| {
            addrs.map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        };
        return Err(Refusal {
            code: HttpError::DestinationIpProhibited,
            message: format!(
                "HTTP request to origin `{origin}` refused: it now resolves to {} but resolved to \
                 {} when the call was granted it; medic connects only to the addresses a granted \
                 origin had at the start of the call (retry the step once its DNS is settled)",
                shown(&mut elsewhere.iter()),
                shown(&mut granted.addrs.iter())
            ),
        });
    }
    Ok(checked)
}

/// Connects to the first of `addrs` that answers.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(HttpError::ConnectionTimeout),
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(e),
        }
    }
    Err(last.map_or(HttpError::ConnectionRefused, HttpError::Connect))
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).map_err(|e| e.to_string())
}

/// One client configuration per process: Mozilla's roots, ring.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Sends `request` as HTTP/1.1 over `io` and returns the response with its body
/// bounded by `between_bytes`, plus the connection's driver for after the headers.
async fn send(
    mut request: http::Request<WasiBody>,
    io: Box<dyn Stream>,
    handshake_timeout: Duration,
    first_byte: Duration,
    between_bytes: Duration,
) -> Sent {
    let (mut sender, conn) = tokio::time::timeout(
        handshake_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // On the wire the request line carries the path only (not via a proxy).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    // Drive the connection while waiting for the response head; after it, the
    // connection is driven by the returned future.
    let mut conn = Some(Box::pin(conn));
    let sending = tokio::time::timeout(first_byte, sender.send_request(request));
    tokio::pin!(sending);
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(sent) = sending.as_mut().poll(cx) {
            return Poll::Ready(Ok(sent));
        }
        let Some(driving) = conn.as_mut() else {
            return Poll::Pending;
        };
        match ready!(driving.as_mut().poll(cx)) {
            Ok(()) => {
                conn = None;
                sending.as_mut().poll(cx).map(Ok)
            }
            Err(e) => {
                conn = None;
                Poll::Ready(Err(HttpError::from(e)))
            }
        }
    })
    .await?
    .map_err(|_| HttpError::ConnectionReadTimeout)?
    .map_err(HttpError::from)?;
    let between_bytes = between_bytes.max(Duration::from_nanos(1));
    let response = response.map(|incoming| {
        Bounded {
            incoming,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
        }
        .boxed_unsync()
    });
    let driver = async move {
        let Some(conn) = conn else { return Ok(()) };
        conn.await.map_err(|e| {
            if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }
        })
    };
    Ok((response, Box::new(driver)))
}

/// A response body that fails when no frame arrives within `between_bytes`.
struct Bounded {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + self.between_bytes;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
pub(super) mod scripted {
    //! Scripted name resolution for tests: each lookup of a name takes the next
    //! answer; the last one stays.

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    static ANSWERS: Mutex<Option<HashMap<String, Vec<Vec<SocketAddr>>>>> = Mutex::new(None);

    pub fn script(authority: &str, answers: Vec<Vec<SocketAddr>>) {
        let mut all = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
        all.get_or_insert_default()
            .insert(authority.to_string(), answers);
    }

    pub(super) fn answer(authority: &str) -> Option<Vec<SocketAddr>> {
        let mut all = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
        let answers = all.as_mut()?.get_mut(authority)?;
        if answers.len() > 1 {
            Some(answers.remove(0))
        } else {
            answers.first().cloned()
        }
    }
}
