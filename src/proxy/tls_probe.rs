//! Whether the upstream speaks TLS: the likeliest reason an exchange breaks before any answer
//! when the dev server runs with `https` on (Vite's `--https`, Phoenix's `https:` endpoint, a
//! Python or Node server wrapped in TLS) and hmr-proxy was given its address as `http://`.
//!
//! Owns the probe and its cached verdict. After an exchange broke or came back unreadable, one
//! TLS ClientHello is sent on a fresh connection: a TLS server answers it with a handshake or an
//! alert record, which no plain HTTP server sends. The verdict is kept until the upstream answers
//! an exchange again, so a failing page costs one probe, not one per request (a plain server
//! would log each probe as a bad request). It runs for `http://` upstreams only, does not speak
//! TLS itself (`tls` does, for `https://` ones) and does not decide what the browser sees
//! (`unavailable`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long the probe waits for the first bytes of the answer: a local TLS server answers a
/// ClientHello in about a millisecond.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const TLS: u8 = 1;
const PLAIN: u8 = 2;

/// The cached verdict for one upstream.
#[derive(Debug, Default)]
pub struct TlsProbe {
    verdict: AtomicU8,
    /// Held while probing: a page and its assets failing together wait for one probe instead
    /// of sending one each.
    probing: tokio::sync::Mutex<()>,
}

impl TlsProbe {
    /// Whether the upstream at `authority` (`host:port`) speaks TLS, probing it unless that is
    /// already known since its last answer.
    pub async fn speaks_tls(&self, authority: &str, connect_timeout: Duration) -> bool {
        let _probing = self.probing.lock().await;
        match self.verdict.load(Ordering::Relaxed) {
            TLS => return true,
            PLAIN => return false,
            _ => {}
        }
        let tls = probe(authority, connect_timeout).await;
        self.verdict
            .store(if tls { TLS } else { PLAIN }, Ordering::Relaxed);
        tls
    }

    /// The upstream answered an exchange: whatever it spoke before, it speaks HTTP now.
    pub fn answered(&self) {
        if self.verdict.load(Ordering::Relaxed) != UNKNOWN {
            self.verdict.store(UNKNOWN, Ordering::Relaxed);
        }
    }
}

async fn probe(authority: &str, connect_timeout: Duration) -> bool {
    let exchange = async {
        let mut stream =
            tokio::time::timeout(connect_timeout, super::connector::connect(authority))
                .await
                .ok()?
                .ok()?;
        stream.write_all(&client_hello()).await.ok()?;
        let mut first = [0u8; 2];
        tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut first))
            .await
            .ok()?
            .ok()?;
        Some(is_tls_record(first))
    };
    exchange.await.unwrap_or(false)
}

/// A TLS record header: handshake (22) or alert (21), protocol major version 3 (SSL 3.0 to
/// TLS 1.3 all write 3 there). An HTTP answer starts with `HT`.
fn is_tls_record(first: [u8; 2]) -> bool {
    matches!(first, [21 | 22, 3])
}

/// A TLS 1.2 ClientHello any TLS server can parse: two common suites (one TLS 1.3, one 1.2
/// ECDHE-RSA), the groups and signature algorithms they need. Whether the server likes it does
/// not matter: a refusal is an alert record, as telling as a ServerHello.
fn client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extensions.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed.
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: rsa_pss_rsae_sha256, rsa_pkcs1_sha256, ecdsa_secp256r1_sha256.
    extensions.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x08, 0x04, 0x04, 0x01, 0x04, 0x03,
    ]);

    let mut hello = vec![0x03, 0x03]; // client_version: TLS 1.2
    hello.extend_from_slice(&[0x2a; 32]); // random
    hello.push(0); // no session id
    // cipher suites: TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM-SHA256,
    // ECDHE-ECDSA-AES128-GCM-SHA256.
    hello.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0xc0, 0x2f, 0xc0, 0x2b]);
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    hello.extend_from_slice(&len16(extensions.len()));
    hello.extend_from_slice(&extensions);

    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&len24(hello.len()));
    handshake.extend_from_slice(&hello);

    let mut record = vec![22, 0x03, 0x01]; // handshake record, version TLS 1.0 as is usual
    record.extend_from_slice(&len16(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

fn len16(n: usize) -> [u8; 2] {
    let [.., hi, lo] = (n as u32).to_be_bytes();
    [hi, lo]
}

fn len24(n: usize) -> [u8; 3] {
    let [_, a, b, c] = (n as u32).to_be_bytes();
    [a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_one_well_formed_record() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[22, 3, 1]);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 1);
        let handshake_len =
            usize::from(hello[6]) << 16 | usize::from(hello[7]) << 8 | usize::from(hello[8]);
        assert_eq!(handshake_len, hello.len() - 9);
    }

    #[test]
    fn records_and_http_answers_are_told_apart() {
        assert!(is_tls_record([22, 3]));
        assert!(is_tls_record([21, 3]));
        assert!(!is_tls_record(*b"HT"));
        assert!(!is_tls_record([22, 1]));
    }
}
