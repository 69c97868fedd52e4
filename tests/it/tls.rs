//! TLS on every listener: the REST API over HTTPS, WKProto over TLS on the TCP port and over wss, with a
//! certificate made for the test; plain connections to those ports get nowhere.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rookery::gateway::crypto::ServerKeyPair;
use rookery::gateway::packet::{self, ConnectPacket, Packet, ReasonCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Server;

pub(crate) fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

fn connector(cert: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls(connector: &tokio_rustls::TlsConnector, addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake")
}

/// One HTTP/1.1 request over `stream`; returns the whole response text.
async fn http<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, method: &str, path: &str, body: &str) -> String {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn connect_packet() -> Vec<u8> {
    let keys = ServerKeyPair::generate().unwrap();
    let connect = Packet::Connect(ConnectPacket {
        version: 4,
        device_flag: 1,
        device_id: "d1".into(),
        uid: "ann".into(),
        token: "t-ann".into(),
        client_timestamp: 1,
        client_key: keys.public_key_base64(),
    });
    packet::encode_to_vec(&connect, 4).unwrap()
}

fn connack_reason(bytes: &[u8]) -> ReasonCode {
    let (p, _) = packet::decode(bytes, 4).expect("a CONNACK");
    match p {
        Packet::Connack(c) => c.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tcp_and_websocket_listeners_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (cert_s, key_s) = (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string());
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("ROOKERY_TLS_CERT_FILE", &cert_s),
            ("ROOKERY_TLS_KEY_FILE", &key_s),
            ("ROOKERY_TLS_API", "true"),
            ("ROOKERY_TLS_TCP", "true"),
            ("ROOKERY_TLS_WS", "true"),
        ],
    );
    let connector = connector(&cert);

    let answer = http(tls(&connector, server.api).await, "POST", "/user/token", r#"{"uid":"ann","token":"t-ann","device_flag":1,"device_level":1}"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let plain = http(TcpStream::connect(server.api).await.unwrap(), "GET", "/healthz", "").await;
    assert!(!plain.contains("200 OK"), "plain HTTP is not served on the TLS port: {plain}");

    // WKProto over TLS on the TCP port.
    let mut stream = tls(&connector, server.tcp).await;
    stream.write_all(&connect_packet()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(connack_reason(&buf[..n]), ReasonCode::SUCCESS);
    let mut plain = TcpStream::connect(server.tcp).await.unwrap();
    plain.write_all(&connect_packet()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), plain.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert!(n == 0 || packet::decode(&buf[..n], 4).is_err(), "a plain CONNECT gets no CONNACK");

    // WKProto over wss.
    let stream = tls(&connector, server.ws).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/", stream).await.expect("wss upgrade");
    ws.send(tokio_tungstenite::tungstenite::Message::binary(connect_packet())).await.unwrap();
    let reply = loop {
        match ws.next().await.expect("a reply").unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => break b,
            _ => continue,
        }
    };
    assert_eq!(connack_reason(&reply), ReasonCode::SUCCESS);
}

#[test]
fn tls_without_a_certificate_stops_the_server_at_start() {
    let err = crate::support::refused_start(&[("ROOKERY_TLS_TCP", "true")]);
    assert!(err.contains("tls_cert_file"), "{err}");
}
