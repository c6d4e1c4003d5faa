//! Speaking TLS to an `https://` upstream: ASP.NET's and Symfony's dev servers, Vite's
//! `--https`, Phoenix's `https:` endpoint, a Valet `.test` site, Spring Boot with a keystore.
//!
//! Owns the client side of the handshake the connector runs on a fresh TCP connection, and the
//! rule for the upstream's certificate: **an upstream on this machine (the connection's peer is a
//! loopback address) is accepted whatever its certificate**, since dev servers present
//! self-signed or locally issued ones and nobody can sit between two ends of a loopback
//! connection; any other is verified against the system's trusted roots (which hold mkcert's and
//! Symfony's local authorities once installed) unless `--insecure` says to accept it too. The
//! signatures of the handshake are checked either way. It offers only HTTP/1.1 (ALPN), as the
//! proxy speaks to every upstream. It does not decide what the browser sees (`unavailable`
//! words a failure) and has nothing to do with `tls_probe`, which finds out that an `http://`
//! upstream speaks TLS. The browser side stays plain HTTP: the proxy needs no certificate, and
//! Chromium and Firefox keep `Secure` cookies for `http://localhost` and `http://127.0.0.1`.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a TLS connection to the upstream was not made.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("`{0}` is not a host name TLS can verify")]
    Name(String),
    #[error("TLS handshake failed")]
    Failed(#[source] io::Error),
}

/// What the handshake's failure says about the upstream.
pub enum Verdict {
    /// Its certificate is not one the proxy trusts (the text says why).
    Untrusted(String),
    /// It answered the ClientHello with something that is not TLS: a plain HTTP server.
    NotTls,
}

impl HandshakeError {
    /// `Some` for the failures a developer fixes differently from a connection that broke.
    pub fn verdict(&self) -> Option<Verdict> {
        let HandshakeError::Failed(io) = self else {
            return None;
        };
        match io.get_ref()?.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(why) => {
                let why = why.to_string();
                // An unknown issuer, or a certificate that is its own authority (`openssl req
                // -x509` makes one): what a dev server's self-signed certificate is refused for.
                Some(Verdict::Untrusted(
                    if why == "UnknownIssuer" || why.contains("CaUsedAsEndEntity") {
                        "it is self-signed, or issued by an authority the system does not trust"
                            .into()
                    } else {
                        why
                    },
                ))
            }
            rustls::Error::InvalidMessage(_) => Some(Verdict::NotTls),
            _ => None,
        }
    }
}

/// The handshake for every https upstream. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    /// Accept any certificate from any upstream (`--insecure`).
    insecure: bool,
    handshake_timeout: Duration,
}

impl Tls {
    pub fn new(insecure: bool, handshake_timeout: Duration) -> Self {
        Tls {
            insecure,
            handshake_timeout,
        }
    }

    /// TLS over `tcp`, for the upstream named `host` (as in its URL: a name, an IPv4 address or
    /// a bracketed IPv6 one). Bounded by the connect timeout: a server that accepts and never
    /// answers the ClientHello would otherwise hold the request until the response timeout.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| HandshakeError::Name(host.to_string()))?;
        let local = tcp.peer_addr().is_ok_and(|peer| is_loopback(peer.ip()));
        let config = if local || self.insecure {
            any_certificate()
        } else {
            verified()
        };
        connect(config, tcp, name, self.handshake_timeout).await
    }
}

async fn connect(
    config: Arc<ClientConfig>,
    tcp: TcpStream,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let connecting = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(HandshakeError::Failed(err)),
        Err(_) => Err(HandshakeError::Timeout(timeout)),
    }
}

/// Loopback, IPv4-mapped IPv6 included (`::ffff:127.0.0.1` on a dual-stack socket).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

// ring rather than aws-lc-rs (rustls' default, whose post-quantum key exchange is why ring's
// provider is marked deprecated): aws-lc builds a C library with cmake, minutes on a 2-core
// machine, for a connection to a dev server that needs no post-quantum secrecy.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn with_alpn(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Verified against the system's roots, read once, on the first handshake that needs them (a
/// few milliseconds; most runs never need them).
fn verified() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::debug!("reading the system's trusted certificates: {err}");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!("{added} trusted root certificates ({ignored} unreadable)");
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            match config {
                Ok(config) => with_alpn(config),
                // The built-in provider supports the default versions; were it not so, a
                // configuration that trusts nothing still fails every handshake safely.
                Err(_) => with_alpn(
                    ClientConfig::builder()
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth(),
                ),
            }
        })
        .clone()
}

/// Any certificate, with the handshake's signatures still checked.
fn any_certificate() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth()
                });
            match config {
                Ok(config) => with_alpn(config),
                Err(_) => verified(),
            }
        })
        .clone()
}

/// Takes the server's certificate as it comes (see the module docs for when).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS server on loopback with a self-signed certificate for `localhost`, answering one
    /// handshake.
    async fn self_signed_server() -> std::net::SocketAddr {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        addr
    }

    async fn handshake(config: Arc<ClientConfig>) -> Result<(), HandshakeError> {
        let addr = self_signed_server().await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        connect(config, tcp, name, Duration::from_secs(10))
            .await
            .map(drop)
    }

    #[tokio::test]
    async fn a_self_signed_certificate_is_untrusted_where_it_is_verified() {
        let err = handshake(verified()).await.expect_err("refused");
        assert!(
            matches!(err.verdict(), Some(Verdict::Untrusted(_))),
            "{err:?}"
        );
        handshake(any_certificate()).await.expect("accepted");
    }

    #[tokio::test]
    async fn a_plain_http_answer_to_the_hello_is_told_apart() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let err = connect(any_certificate(), tcp, name, Duration::from_secs(10))
            .await
            .expect_err("not TLS");
        assert!(matches!(err.verdict(), Some(Verdict::NotTls)), "{err:?}");
    }

    #[test]
    fn loopback_includes_the_mapped_form() {
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["10.0.0.1", "172.17.0.2", "::ffff:10.0.0.1", "0.0.0.0"] {
            assert!(!is_loopback(ip.parse().expect("ip")), "{ip}");
        }
    }
}
