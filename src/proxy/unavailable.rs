//! The answer when the upstream cannot be reached: a helpful page for people, a line for tools.
//!
//! Owns the classification of a failed upstream exchange ([`Failure`]), its status (502 or 504)
//! and the response body. Browsers asking for HTML get a page that says which upstream, what failed
//! and what to check. When the upstream is not there at all, the page reloads itself once it
//! is back: it asks the proxy's own `/__hmr/upstream?path=<its path>` (`router`), which
//! answers `{"up": …}` after a connect to the upstream that serves that path and never sends it
//! a request, so polling runs none of the app's handlers and puts no failed request in the
//! console. So does it when the upstream's address has the wrong scheme or its certificate is
//! not trusted (fixed by restarting one of the two); when it is there but failed this page, the
//! page waits for the next save (the proxy injects the client into it). Everything else gets
//! short plain text. Error text is HTML-escaped: it can contain anything the network said.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::tls::{HandshakeError, Verdict};
use crate::body::{self, Body};

/// Header on every response this module makes, so a tool (or someone in the network panel) can
/// tell this proxy's 502 from an upstream's own.
pub const MARKER: &str = "x-hmr-proxy-unavailable";

/// Why the upstream exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// Nothing listens at the upstream's address (for a `localhost` upstream, where it was
    /// tried: filled in by `proxy::mod`).
    Refused(Tried),
    /// The upstream's host name does not resolve.
    Unresolved,
    /// The TCP connection was not established in time.
    ConnectTimeout(Duration),
    /// Another connection error.
    Connect(String),
    /// The proxy itself had no file descriptor left to connect with (EMFILE, ENFILE): not the
    /// upstream's doing, so no outage, and no reload of every tab when it "comes back".
    OutOfFiles(String),
    /// Connected, but no response headers arrived in time.
    ResponseTimeout(Duration),
    /// The upstream closed (or reset) the connection before any answer: the dev server
    /// restarted or crashed under the request, or a pooled connection it had just closed.
    /// hyper says "connection closed before message completed", after hyper-util's "client
    /// error (SendRequest)", which reads as if the browser had failed: `detail` keeps it for the
    /// debug log only.
    Closed { detail: String, resend: Resend },
    /// The connection broke otherwise before a response arrived.
    Exchange(String),
    /// The upstream answered, but not in HTTP/1.1 hmr-proxy can read (a malformed status line
    /// or header). Sending the request again would get the same.
    Malformed(String),
    /// The upstream's response head was larger than the connection reads: more header fields
    /// than hyper's default 100 (a debug toolbar's, a page setting a hundred cookies), after
    /// which the upstream's connections read more (`pool`), and a request without a body is sent
    /// again; or larger than any connection reads (1,000 fields, about 400 KB).
    TooLarge(String),
    /// The exchange broke or was unreadable, and the upstream answers a TLS ClientHello: it is
    /// an https server given as `http://` (`tls_probe`).
    Tls,
    /// An `https://` upstream off this machine presented a certificate the system does not
    /// trust (the text says why).
    Untrusted(String),
    /// An `https://` upstream answered the TLS handshake with something else: a plain HTTP
    /// server given as `https://`.
    NotTls,
    /// The TLS handshake with an `https://` upstream failed otherwise (closed, timed out, an
    /// alert: HTTP/2 only, a client certificate required, an old TLS version). The connection
    /// was made, so the upstream is not down: counted as unreachable, it flipped the health to
    /// down and, at the next probe's connect, back up, which reloaded every tab, whose reload
    /// failed the same way, for ever.
    Handshake(String),
}

/// Where a refused `localhost` upstream was tried: the addresses `localhost` resolves to here,
/// and the same port on the other loopback family if a server listens there. `localhost` is
/// 127.0.0.1 alone on some systems (many container images, an `/etc/hosts` without `::1`) and
/// `::1` first on others, and a dev server listens on one of them (Node 17 and later, and so
/// Vite, on the first `localhost` resolved to): each side reads "localhost" and they miss.
#[derive(Debug, Default)]
pub struct Tried {
    pub addrs: Vec<SocketAddr>,
    pub elsewhere: Option<SocketAddr>,
}

/// What became of a request whose connection closed before an answer ([`Failure::Closed`]):
/// said by `proxy::mod`, which decides whether to send it again.
#[derive(Debug)]
pub enum Resend {
    /// Not said (what classifying the error gives).
    Unsaid,
    /// Not sent again: its method is not idempotent, or (an idempotent one) its body went
    /// through as it came, and is not kept to send twice.
    Not { method: Method },
    /// Sent again, and that failed as `then` says.
    Failed { method: Method, then: Box<Failure> },
}

impl Failure {
    /// Classify a client error by what lies at the bottom of its source chain.
    pub fn classify(err: &hyper_util::client::legacy::Error, connect_timeout: Duration) -> Self {
        Failure::classify_chain(err, err.is_connect(), connect_timeout)
    }

    /// Classify any error of an exchange: `connecting` when it came from making the connection
    /// (the connector's), else from the exchange on it (hyper's).
    pub fn classify_chain(
        err: &(dyn std::error::Error + 'static),
        connecting: bool,
        connect_timeout: Duration,
    ) -> Self {
        let chain = chain_text(err);
        if let Some(handshake) = sources(err).find_map(|e| e.downcast_ref::<HandshakeError>()) {
            return match handshake.verdict() {
                Some(Verdict::Untrusted(why)) => Failure::Untrusted(why),
                Some(Verdict::NotTls) => Failure::NotTls,
                None => Failure::Handshake(chain_text(handshake)),
            };
        }
        if connecting {
            let io = sources(err).find_map(|e| e.downcast_ref::<std::io::Error>());
            if io.is_some_and(out_of_files) {
                return Failure::OutOfFiles(chain);
            }
            match io.map(std::io::Error::kind) {
                Some(std::io::ErrorKind::ConnectionRefused) => Failure::Refused(Tried::default()),
                Some(std::io::ErrorKind::TimedOut) => Failure::ConnectTimeout(connect_timeout),
                _ if chain.contains("dns error") || chain.contains("lookup address") => {
                    Failure::Unresolved
                }
                _ => Failure::Connect(chain),
            }
        } else if is_too_large(err) {
            Failure::TooLarge(chain)
        } else if is_unreadable_answer(err) {
            Failure::Malformed(chain)
        } else if is_closed_early(err) {
            Failure::Closed {
                detail: chain,
                resend: Resend::Unsaid,
            }
        } else {
            Failure::Exchange(chain)
        }
    }

    /// Where a refused connection was tried, to be filled in: the exchange's (or, for a
    /// request sent again, that one's) when it was refused.
    pub fn tried_mut(&mut self) -> Option<&mut Tried> {
        match self {
            Failure::Closed {
                resend: Resend::Failed { then, .. },
                ..
            } => then.tried_mut(),
            Failure::Refused(tried) => Some(tried),
            _ => None,
        }
    }

    /// The failure the exchange ended with: for a request sent again, that one's.
    pub fn last(&self) -> &Failure {
        match self {
            Failure::Closed {
                resend: Resend::Failed { then, .. },
                ..
            } => then.last(),
            other => other,
        }
    }

    /// Every request fails the same way until the dev server changes (not just this page): the
    /// waiting page polls, and the log says it once.
    pub fn is_outage(&self) -> bool {
        self.is_unreachable()
            || matches!(
                self.last(),
                Failure::Tls | Failure::Untrusted(_) | Failure::NotTls | Failure::Handshake(_)
            )
    }

    /// The upstream is not there at all (as opposed to slow or misbehaving): also a request
    /// cut off by a dev server that exited, sent again and refused.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.last(),
            Failure::Refused(_)
                | Failure::Unresolved
                | Failure::ConnectTimeout(_)
                | Failure::Connect(_)
        )
    }

    pub fn status(&self) -> StatusCode {
        match self.last() {
            Failure::ConnectTimeout(_) | Failure::ResponseTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::OutOfFiles(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// One sentence: what went wrong.
    pub fn summary(&self, upstream: &str) -> String {
        match self {
            Failure::Refused(Tried { addrs, elsewhere }) => {
                let mut text = format!("nothing is listening at {upstream} (connection refused");
                if !addrs.is_empty() {
                    let addrs: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                    text.push_str(" at ");
                    text.push_str(&addrs.join(" and "));
                }
                text.push(')');
                if let Some(there) = elsewhere {
                    let scheme = upstream.split_once("://").map_or("http", |(s, _)| s);
                    text.push_str(&format!(
                        "; a server listens on {there}, which localhost does not resolve to \
                         here: give hmr-proxy {scheme}://{there} instead"
                    ));
                }
                text
            }
            Failure::Unresolved => format!("the host name in {upstream} does not resolve"),
            Failure::ConnectTimeout(d) => {
                format!("connecting to {upstream} timed out after {}", human(*d))
            }
            Failure::Connect(e) => format!("cannot connect to {upstream}: {e}"),
            Failure::OutOfFiles(e) => {
                format!("hmr-proxy has no file descriptor left to connect to {upstream}: {e}")
            }
            Failure::ResponseTimeout(d) => {
                format!("{upstream} sent no response within {}", human(*d))
            }
            Failure::Closed { resend, .. } => {
                let closed = format!("{upstream} closed the connection before answering");
                let why = "(the dev server may have restarted or crashed)";
                match resend {
                    Resend::Unsaid => format!("{closed} {why}"),
                    Resend::Not { method } if !method.is_idempotent() => format!(
                        "{closed} {why}; the {method} was not sent again, as {method} is not \
                         idempotent"
                    ),
                    Resend::Not { method } => format!(
                        "{closed} {why}; the {method} was not sent again, as its body was passed \
                         on as it came, not kept"
                    ),
                    Resend::Failed { method, then } => match &**then {
                        Failure::Closed { .. } => format!(
                            "{closed} the {method}, and again when it was sent again (the dev \
                             server may have restarted or crashed, or it fails on this request)"
                        ),
                        then => format!(
                            "{closed} the {method} {why}; sent again, {}",
                            then.summary(upstream)
                        ),
                    },
                }
            }
            Failure::Exchange(e) => format!("the exchange with {upstream} failed: {e}"),
            Failure::Malformed(e) => {
                format!("{upstream} answered with a response hmr-proxy cannot read: {e}")
            }
            Failure::TooLarge(_) => format!(
                "{upstream} answered with a response head larger than hmr-proxy reads (more \
                 than 1,000 header fields, or about 400 KB)"
            ),
            Failure::Tls => format!(
                "{upstream} speaks HTTPS (TLS): give hmr-proxy {} instead",
                upstream.replacen("http://", "https://", 1)
            ),
            Failure::Untrusted(why) => {
                format!("{upstream} presented a TLS certificate hmr-proxy does not trust ({why})")
            }
            Failure::NotTls => format!(
                "{upstream} does not speak TLS (HTTPS): give hmr-proxy {} instead",
                upstream.replacen("https://", "http://", 1)
            ),
            Failure::Handshake(e) => format!("the TLS handshake with {upstream} failed: {e}"),
        }
    }

    /// The tab's title after the status: what the page waits for when it polls, else what
    /// happened. A page that reloads only on the next save waits for nothing the title could
    /// name; "waiting for" there read as if the dev server were still starting.
    fn title(&self, upstream: &str) -> String {
        if self.is_outage() {
            return format!("waiting for {upstream}");
        }
        match self.last() {
            Failure::Closed { .. } => format!("{upstream} closed the connection"),
            Failure::ResponseTimeout(_) => format!("{upstream} sent no response in time"),
            Failure::Malformed(_) | Failure::TooLarge(_) => {
                format!("{upstream} sent an answer hmr-proxy cannot read")
            }
            Failure::OutOfFiles(_) => "hmr-proxy has no file descriptor left".to_string(),
            _ => format!("the exchange with {upstream} failed"),
        }
    }

    /// What the developer should check, most likely first.
    fn hints(&self) -> &'static [&'static str] {
        match self {
            Failure::Closed { resend, .. } => match resend {
                Resend::Unsaid => &[
                    "It may have restarted after a save, or crashed on this request: its log says which.",
                ],
                Resend::Not { .. } => &[
                    "It may have restarted after a save, or crashed on this request: its log says which.",
                    "hmr-proxy sends a request again by itself only when that is safe (a GET, HEAD, PUT or DELETE without a body): send this one again once the dev server is back.",
                ],
                Resend::Failed { then, .. } => match &**then {
                    Failure::Closed { .. } => &[
                        "A dev server that closes the connection on every try may be crashing on this request: its log says why.",
                    ],
                    then => then.hints(),
                },
            },
            Failure::Refused(Tried {
                elsewhere: Some(_), ..
            }) => &[
                "hmr-proxy connects where localhost resolves to on this machine, and the dev server listens on the other loopback address: give hmr-proxy the address it listens on (above), or have the dev server listen on both 127.0.0.1 and ::1.",
            ],
            Failure::Refused(_) => &[
                "Is the dev server running? It may be restarting after a change.",
                "Is it listening on this port? Check the URL given to hmr-proxy.",
                "In Docker, the dev server must listen on 0.0.0.0 and the upstream must name its service.",
            ],
            Failure::Unresolved => &[
                "Check the host name given to hmr-proxy for typos.",
                "In Docker compose, use the service name of the app container.",
            ],
            Failure::ConnectTimeout(_) | Failure::Connect(_) => &[
                "Is the host reachable from where hmr-proxy runs?",
                "A firewall or a wrong network may drop the connection; raise --connect-timeout if it is just slow.",
            ],
            Failure::OutOfFiles(_) => &[
                "hmr-proxy has as many files and connections open as the system lets it (ulimit -n): close tabs or downloads that hang, or raise the hard limit.",
            ],
            Failure::ResponseTimeout(_) => &[
                "The dev server accepted the request but is still working (a first compile can be slow).",
                "Raise --response-timeout if this is expected.",
            ],
            Failure::Exchange(_) => {
                &["The dev server closed the connection before answering; check its log."]
            }
            Failure::Malformed(_) => &[
                "Look at what the dev server sends for this URL with `curl -i`: hmr-proxy reads only well-formed HTTP/1.1.",
            ],
            Failure::TooLarge(_) => &[
                "Look at what the dev server sends for this URL with `curl -i`: a header sent again and again (a cookie set in a loop) is a bug of the app's.",
            ],
            Failure::Tls => &[
                "The browser still talks plain HTTP to hmr-proxy, which needs no certificate.",
                "Or run the dev server on plain HTTP (turn off its https or TLS option).",
            ],
            Failure::Untrusted(_) => &[
                "A dev server on this machine is trusted whatever its certificate; one elsewhere (another container, a VM) must present a certificate the system trusts.",
                "Start hmr-proxy with --insecure (HMR_PROXY_INSECURE=true) to accept the dev server's self-signed certificate.",
            ],
            Failure::NotTls => {
                &["Or turn on the dev server's https or TLS option, if it should have one."]
            }
            Failure::Handshake(_) => &[
                "hmr-proxy speaks HTTP/1.1 over TLS 1.2 or 1.3 and presents no client certificate: a dev server that offers only HTTP/2, requires a client certificate or an older TLS refuses it.",
                "Or run the dev server on plain HTTP and give hmr-proxy its http:// address.",
            ],
        }
    }
}

/// EMFILE or ENFILE: this process, or the whole system, has no file descriptor left.
pub fn out_of_files(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(23 | 24))
}

/// Whether hyper failed on the upstream's answer itself (it arrived, and could not be parsed),
/// rather than on the connection.
/// Whether the upstream's response head was larger than the connection reads (hyper says
/// "message head is too large" for the number of fields as for the size). `pool` widens its
/// connections on it.
pub(super) fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    sources(err)
        .find_map(|e| e.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_parse_too_large)
}

fn is_unreadable_answer(err: &(dyn std::error::Error + 'static)) -> bool {
    sources(err)
        .find_map(|e| e.downcast_ref::<hyper::Error>())
        .is_some_and(|hyper| {
            hyper.is_parse() || hyper.is_parse_too_large() || hyper.is_parse_status()
        })
}

/// Whether the upstream closed or reset the connection before an answer came: hyper's
/// "connection closed before message completed" (and its request cancelled, its channel closed,
/// for the same), or the socket's reset, abort or early end.
fn is_closed_early(err: &(dyn std::error::Error + 'static)) -> bool {
    sources(err).any(|e| {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed();
        }
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        })
    })
}

/// The error and everything under it.
fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

pub(super) fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Whether a request asked for HTML (a browser navigation gets the page, anything else text).
pub fn wants_html(request_headers: &HeaderMap) -> bool {
    request_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The response for a failed exchange: the page when `wants_html`, else plain text.
pub fn response(failure: &Failure, upstream: &str, wants_html: bool) -> Response<Body> {
    let summary = failure.summary(upstream);
    let mut res = if wants_html {
        body::html(failure.status(), page(failure, upstream, &summary))
    } else {
        body::plain(failure.status(), format!("hmr-proxy: {summary}"))
    };
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res.headers_mut()
        .insert(MARKER, HeaderValue::from_static("1"));
    res.extensions_mut().insert(crate::inject::Unanswered);
    // Only where the request never reached the dev server: a POST it may have taken (cut off,
    // timed out) is better reloaded with a GET than sent again.
    if failure.is_outage() && !matches!(failure, Failure::Closed { .. }) {
        res.extensions_mut().insert(crate::inject::StandIn);
    }
    res
}

/// The waiting page's poll: the proxy's `/__hmr/upstream` says whether the upstream serving
/// this path is back, from a connect (asking the page's own URL, even with `HEAD`, ran the
/// app's handler: Go's `net/http` runs a `GET` handler for it, and a form handler ran with an
/// empty form; and each failed try was a red 502 in the console). The path goes as the
/// browser keeps it (`location.pathname`, already escaped), the query's only and last field.
/// Every 300 ms at first, backing off to 3 s; a proxy that does not answer (restarting) is
/// asked again too. Only for a dev server that is not there at all: one that is up but fails
/// this page (a handler that crashes, a `GET` slower than the response timeout) would be
/// reloaded into the same failure every few seconds, each time one more traceback in its log.
/// The injected client reloads the page too when the proxy sees the server back: whichever
/// comes first marks the window (`hmrReloading`) and the other leaves it, or a page that
/// answered a POST sent the form twice.
const POLL: &str = r#"<p class="wait">This page reloads by itself as soon as the dev server answers.</p>
<script>
(function poll(delay) {
  setTimeout(function () {
    if (window.hmrReloading) return;
    var again = function () { poll(Math.min(delay * 1.5, 3000)); };
    fetch("/__hmr/upstream?path=" + location.pathname, { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (state) {
        if (!state.up) return again();
        if (!window.hmrReloading) { window.hmrReloading = true; location.reload(); }
      }, again);
  }, delay);
})(300);
</script>"#;

/// What the page says instead when the dev server is there but failed this page: the injected
/// client reloads it on the next save, when there may be a fix.
const NEXT_SAVE: &str = r#"<p class="wait">This page reloads on the next save.</p>"#;

fn page(failure: &Failure, upstream: &str, summary: &str) -> String {
    let wait = if failure.is_outage() { POLL } else { NEXT_SAVE };
    let hints: String = failure
        .hints()
        .iter()
        .map(|h| format!("<li>{}</li>", body::escape_html(h)))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} · {title_e}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.4rem; }} code {{ background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }}
.wait {{ color: #666; }}
</style>
</head>
<body>
<h1>{heading}</h1>
<p>{summary_e}.</p>
<p>Upstream: <code>{upstream_e}</code> · status {status}</p>
<ul>{hints}</ul>
{wait}
</body>
</html>
"#,
        heading = match failure {
            Failure::Tls => "The dev server speaks HTTPS",
            Failure::NotTls => "The dev server speaks plain HTTP",
            Failure::Untrusted(_) => "The dev server's certificate is not trusted",
            Failure::Handshake(_) => "The TLS handshake with the dev server failed",
            Failure::Closed { .. } => "The dev server closed the connection",
            f if f.is_unreachable() => "hmr-proxy cannot reach the dev server",
            _ => "The dev server did not answer this page",
        },
        status = failure.status().as_u16(),
        title_e = body::escape_html(&failure.title(upstream)),
        upstream_e = body::escape_html(upstream),
        summary_e = body::escape_html(summary),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_is_escaped() {
        let f = Failure::Exchange("<script>alert(1)</script>".into());
        let html = page(&f, "http://x:1", &f.summary("http://x:1"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)"));
    }

    /// The proxy out of file descriptors is no outage of the upstream: it read as one, and when a
    /// descriptor came free every tab was reloaded for the upstream "coming back".
    #[test]
    fn running_out_of_files_is_not_the_upstream_going_down() {
        let timeout = Duration::from_secs(3);
        for errno in [23, 24] {
            let err = std::io::Error::from_raw_os_error(errno);
            let failure = Failure::classify_chain(&err, true, timeout);
            assert!(matches!(failure, Failure::OutOfFiles(_)), "{failure:?}");
            assert!(!failure.is_unreachable() && !failure.is_outage());
            assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Failure::classify_chain(&refused, true, timeout).is_unreachable());
    }

    #[test]
    fn only_a_missing_upstream_is_polled_for() {
        let missing = page(&Failure::Refused(Tried::default()), "http://x:1", "down");
        assert!(missing.contains("/__hmr/upstream?path=") && missing.contains("reloads by itself"));
        // Never the page's own URL: that runs the app's handler.
        assert!(!missing.contains("location.href") && !missing.contains("HEAD"));
        let failing = page(&Failure::Exchange("reset".into()), "http://x:1", "reset");
        assert!(!failing.contains("fetch(") && failing.contains("next save"));
        // An https server answers nothing until it is restarted on plain HTTP: polled for.
        let tls = page(&Failure::Tls, "http://x:1", "tls");
        assert!(tls.contains("reloads by itself") && tls.contains("plain HTTP"));
        assert!(!Failure::Tls.is_unreachable());
    }

    /// A connection the dev server closed before answering is said in its words, with what
    /// became of the request; a request sent again and refused is an outage, polled for.
    #[test]
    fn a_closed_connection_says_what_became_of_the_request() {
        let up = "http://x:1";
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let failure = Failure::classify_chain(&reset, false, Duration::from_secs(1));
        assert!(
            matches!(
                failure,
                Failure::Closed {
                    resend: Resend::Unsaid,
                    ..
                }
            ),
            "{failure:?}"
        );
        let closed = |resend| Failure::Closed {
            detail: "connection closed before message completed".into(),
            resend,
        };
        let put = closed(Resend::Not {
            method: Method::PUT,
        });
        assert!(
            put.summary(up).ends_with(
                "the PUT was not sent again, as its body was passed on as it came, not kept"
            ),
            "{}",
            put.summary(up)
        );
        assert!(!put.is_outage() && !put.summary(up).contains("message completed"));
        let gone = closed(Resend::Failed {
            method: Method::GET,
            then: Box::new(Failure::ConnectTimeout(Duration::from_secs(3))),
        });
        assert!(gone.is_unreachable() && gone.is_outage());
        assert_eq!(gone.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(put.title(up), "http://x:1 closed the connection");
        assert_eq!(gone.title(up), "waiting for http://x:1");
        let twice = closed(Resend::Failed {
            method: Method::GET,
            then: Box::new(closed(Resend::Unsaid)),
        });
        assert!(!twice.is_outage());
        assert!(
            twice
                .summary(up)
                .contains("and again when it was sent again")
        );
    }

    /// A refused `localhost` names where it was tried, and the address to give instead when
    /// a server listens on the other loopback family.
    #[test]
    fn a_refused_localhost_names_the_addresses() {
        let up = "http://localhost:8080";
        let tried = |elsewhere| {
            Failure::Refused(Tried {
                addrs: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
                elsewhere,
            })
        };
        assert_eq!(
            tried(None).summary(up),
            "nothing is listening at http://localhost:8080 (connection refused at 127.0.0.1:8080)"
        );
        let there = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 8080));
        assert!(
            tried(Some(there))
                .summary(up)
                .ends_with("give hmr-proxy http://[::1]:8080 instead"),
            "{}",
            tried(Some(there)).summary(up)
        );
        let mut gone = Failure::Closed {
            detail: String::new(),
            resend: Resend::Failed {
                method: Method::GET,
                then: Box::new(Failure::Refused(Tried::default())),
            },
        };
        assert!(gone.tried_mut().is_some());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            Failure::Refused(Tried::default()).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            Failure::ResponseTimeout(Duration::from_secs(1)).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
