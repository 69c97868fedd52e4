//! WKProto over TCP and WebSocket against the real binary: the token check, the CONNACK fields at
//! versions 2 and 5, PING, SEND through the core with its SENDACK, and garbage input. The client side
//! is the server's own codec and crypto (`rookery::gateway`), used the way the JS SDK does.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use rookery::gateway::crypto::{ServerKeyPair, SessionCipher};
use rookery::gateway::packet::{self, ConnackPacket, ConnectPacket, Header, Packet, ReasonCode, RecvackPacket, SendPacket, SendackPacket};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::Server;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Tcp,
    Ws,
}

enum Socket {
    Tcp(TcpStream),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
}

/// A test client: raw socket, reassembly buffer, negotiated version and (after CONNACK) cipher.
pub(crate) struct Client {
    socket: Socket,
    input: Vec<u8>,
    version: u8,
    cipher: Option<SessionCipher>,
    /// Number of binary WebSocket messages received (to check one packet per message).
    ws_messages: usize,
    /// Bytes this client wrote and received (TCP bytes, or WebSocket message payloads).
    pub(crate) bytes_sent: usize,
    pub(crate) bytes_received: usize,
}

impl Client {
    pub(crate) async fn open(s: &Server, kind: Kind) -> Client {
        let socket = match kind {
            Kind::Tcp => Socket::Tcp(TcpStream::connect(s.tcp).await.expect("tcp connect")),
            Kind::Ws => {
                let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}", s.ws)).await.expect("ws connect");
                Socket::Ws(Box::new(ws))
            }
        };
        Client { socket, input: Vec::new(), version: packet::LATEST_VERSION, cipher: None, ws_messages: 0, bytes_sent: 0, bytes_received: 0 }
    }

    /// A logged-in TCP client of the server at `tcp` (for tasks that outlive a `&Server`).
    pub(crate) async fn logged_in_tcp(tcp: std::net::SocketAddr, uid: &str, token: &str, device_flag: u8) -> Client {
        let socket = Socket::Tcp(TcpStream::connect(tcp).await.expect("tcp connect"));
        let mut client = Client { socket, input: Vec::new(), version: packet::LATEST_VERSION, cipher: None, ws_messages: 0, bytes_sent: 0, bytes_received: 0 };
        let ack = client.connect(uid, token, device_flag, 5).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{uid} connects");
        client
    }

    /// Writes a packet; false when the server is gone.
    pub(crate) async fn try_write(&mut self, p: &Packet) -> bool {
        let bytes = packet::encode_to_vec(p, self.version).expect("encode");
        self.bytes_sent += bytes.len();
        match &mut self.socket {
            Socket::Tcp(t) => t.write_all(&bytes).await.is_ok(),
            Socket::Ws(w) => w.send(Message::binary(bytes)).await.is_ok(),
        }
    }

    /// A SEND with its own client_msg_no, built and signed as the JS SDK does.
    pub(crate) fn send_packet_for(&self, client_seq: u32, channel_id: &str, channel_type: u8, text: &str, client_msg_no: &str) -> Packet {
        let mut p = self.send_packet(client_seq, channel_id, channel_type, text);
        if let Packet::Send(send) = &mut p {
            send.client_msg_no = client_msg_no.to_owned();
            send.msg_key = self.cipher.as_ref().expect("connected").send_msg_key(send);
        }
        p
    }

    /// A SEND with these setting bits and client_msg_no, signed again; its SENDACK.
    pub(crate) async fn send_setting(
        &mut self,
        client_seq: u32,
        channel_id: &str,
        channel_type: u8,
        text: &str,
        client_msg_no: &str,
        setting: u8,
    ) -> SendackPacket {
        let mut p = self.send_packet_for(client_seq, channel_id, channel_type, text, client_msg_no);
        if let Packet::Send(send) = &mut p {
            send.setting = packet::Setting(setting);
            send.msg_key = self.cipher.as_ref().expect("connected").send_msg_key(send);
        }
        self.write(&p).await;
        match self.read().await {
            Some(Packet::Sendack(ack)) => ack,
            other => panic!("expected SENDACK, got {other:?}"),
        }
    }

    /// A TCP client with a tiny receive buffer, so that a client that stops reading stalls the
    /// server's writes soon.
    async fn open_small_buffer(s: &Server) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(s.tcp).await.expect("tcp connect");
        Client {
            socket: Socket::Tcp(stream),
            input: Vec::new(),
            version: packet::LATEST_VERSION,
            cipher: None,
            ws_messages: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// The local port of a TCP client.
    pub(crate) fn local_port(&self) -> u16 {
        match &self.socket {
            Socket::Tcp(t) => t.local_addr().expect("local addr").port(),
            Socket::Ws(_) => panic!("a TCP client"),
        }
    }

    async fn write_raw(&mut self, bytes: Vec<u8>) {
        self.bytes_sent += bytes.len();
        match &mut self.socket {
            Socket::Tcp(t) => t.write_all(&bytes).await.expect("tcp write"),
            Socket::Ws(w) => w.send(Message::binary(bytes)).await.expect("ws write"),
        }
    }

    pub(crate) async fn write(&mut self, p: &Packet) {
        let bytes = packet::encode_to_vec(p, self.version).expect("encode");
        self.write_raw(bytes).await;
    }

    /// The next packet, or `None` when the server closed the connection.
    pub(crate) async fn read(&mut self) -> Option<Packet> {
        loop {
            match packet::check(&self.input) {
                Ok(_) => {
                    let (p, len) = packet::decode(&self.input, self.version).expect("server sent a valid packet");
                    self.input.drain(..len);
                    return Some(p);
                }
                Err(packet::DecodeError::Incomplete) => {}
                Err(e) => panic!("server sent garbage: {e}"),
            }
            let more = tokio::time::timeout(WAIT, async {
                match &mut self.socket {
                    Socket::Tcp(t) => {
                        let mut buf = [0u8; 4096];
                        match t.read(&mut buf).await {
                            Ok(0) | Err(_) => None,
                            Ok(n) => Some(buf[..n].to_vec()),
                        }
                    }
                    Socket::Ws(w) => loop {
                        match w.next().await {
                            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                            Some(Ok(Message::Binary(b))) => {
                                // The server must write exactly one whole packet per message.
                                assert_eq!(packet::check(&b), Ok(b.len()), "one packet per WebSocket message");
                                break Some(b.to_vec());
                            }
                            Some(Ok(_)) => {}
                        }
                    },
                }
            })
            .await
            .expect("server answered in time");
            match more {
                Some(bytes) => {
                    self.bytes_received += bytes.len();
                    if matches!(self.socket, Socket::Ws(_)) {
                        self.ws_messages += 1;
                    }
                    self.input.extend_from_slice(&bytes);
                }
                None => {
                    assert!(self.input.is_empty(), "connection closed inside a packet");
                    return None;
                }
            }
        }
    }

    /// The plaintext of a RECV sealed for this session.
    pub(crate) fn open_recv(&self, r: &rookery::gateway::packet::RecvPacket) -> Vec<u8> {
        self.cipher.as_ref().expect("connected").open_recv(r).expect("RECV verifies and decrypts with this session's key")
    }

    /// CONNECT at `version`; returns the CONNACK and keeps the cipher on success.
    /// A client of `kind` that has connected as `uid` with `token` and been accepted.
    pub(crate) async fn logged_in(s: &Server, kind: Kind, uid: &str, token: &str, device_flag: u8, version: u8) -> Client {
        let mut client = Client::open(s, kind).await;
        let ack = client.connect(uid, token, device_flag, version).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{uid} connects");
        client
    }

    pub(crate) async fn connect(&mut self, uid: &str, token: &str, device_flag: u8, version: u8) -> ConnackPacket {
        self.connect_device(uid, token, device_flag, version, "dev1").await
    }

    /// CONNECT from a given device id.
    pub(crate) async fn connect_device(&mut self, uid: &str, token: &str, device_flag: u8, version: u8, device_id: &str) -> ConnackPacket {
        let keys = ServerKeyPair::generate().expect("client keys");
        self.version = packet::negotiate_version(version);
        self.write(&Packet::Connect(ConnectPacket {
            version,
            device_flag,
            device_id: device_id.into(),
            uid: uid.into(),
            token: token.into(),
            client_timestamp: 1,
            client_key: keys.public_key_base64(),
        }))
        .await;
        let Some(Packet::Connack(ack)) = self.read().await else { panic!("expected CONNACK") };
        if ack.reason_code == ReasonCode::SUCCESS {
            self.cipher = Some(keys.agree(&ack.server_key, &ack.salt).expect("agree"));
        }
        ack
    }

    /// A SEND built and signed as the JS SDK does.
    fn send_packet(&self, client_seq: u32, channel_id: &str, channel_type: u8, text: &str) -> Packet {
        let cipher = self.cipher.as_ref().expect("connected");
        let mut send = SendPacket {
            client_seq,
            client_msg_no: format!("cmn-{client_seq}"),
            channel_id: channel_id.into(),
            channel_type,
            payload: cipher.encrypt_payload(text.as_bytes()),
            ..SendPacket::default()
        };
        send.msg_key = cipher.send_msg_key(&send);
        Packet::Send(send)
    }

    pub(crate) async fn send(&mut self, client_seq: u32, channel_id: &str, channel_type: u8, text: &str) -> SendackPacket {
        self.send_with(client_seq, channel_id, channel_type, text, Header::default()).await
    }

    /// A SEND with these header flags; its SENDACK.
    pub(crate) async fn send_with(&mut self, client_seq: u32, channel_id: &str, channel_type: u8, text: &str, header: Header) -> SendackPacket {
        let mut p = self.send_packet(client_seq, channel_id, channel_type, text);
        if let Packet::Send(send) = &mut p {
            send.header = header;
            send.msg_key = self.cipher.as_ref().expect("connected").send_msg_key(send);
        }
        self.write(&p).await;
        match self.read().await {
            Some(Packet::Sendack(ack)) => ack,
            other => panic!("expected SENDACK, got {other:?}"),
        }
    }
}

pub(crate) async fn server_with_tokens() -> (tempfile::TempDir, Server) {
    server_with_tokens_env(&[]).await
}

async fn server_with_tokens_env(env: crate::support::Env<'_>) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), env);
    for (uid, token, flag) in [("alice", "ta", 1), ("bob", "tb", 0), ("carol", "tc", 1)] {
        let (status, v) = s.post("/user/token", &json!({"uid": uid, "token": token, "device_flag": flag, "device_level": 1})).await;
        assert_eq!(status, 200, "{v}");
    }
    (dir, s)
}

/// The ids of the commands waiting in `uid`'s queue (`/message/sync`).
pub(crate) async fn queued(s: &Server, uid: &str) -> Vec<i64> {
    let (status, v) = s.post("/message/sync", &json!({"uid": uid, "limit": 100})).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().expect("array").iter().map(|m| m["message_id"].as_i64().expect("id")).collect()
}

/// Plaintexts of a person channel's history as `login` sees it.
pub(crate) async fn history(s: &Server, login: &str, peer: &str) -> Vec<(u64, String)> {
    let (status, v) = s.post("/channel/messagesync", &json!({"login_uid": login, "channel_id": peer, "channel_type": 1, "limit": 100})).await;
    assert_eq!(status, 200, "{v}");
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(m["payload"].as_str().expect("payload")).expect("base64");
            (m["message_seq"].as_u64().expect("seq"), String::from_utf8(bytes).expect("utf8"))
        })
        .collect()
}

async fn auth(kind: Kind) {
    let (_dir, s) = server_with_tokens().await;
    // Wrong token, unknown device flag, empty uid: CONNACK 2, then the server closes.
    for (uid, token, flag) in [("alice", "wrong", 1), ("alice", "ta", 0), ("", "ta", 1), ("nobody", "x", 1)] {
        let mut c = Client::open(&s, kind).await;
        let ack = c.connect(uid, token, flag, 5).await;
        assert_eq!(ack.reason_code, ReasonCode::AUTH_FAIL, "{kind:?} {uid}/{token}/{flag}");
        assert!(ack.server_key.is_empty());
        assert_eq!(c.read().await, None, "closed after a refused CONNECT");
    }
    // Version 2 (npm SDK 1.0.4): no server_version, no node_id.
    let mut c = Client::open(&s, kind).await;
    let ack = c.connect("alice", "ta", 1, 2).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.server_version, None);
    assert_eq!(ack.node_id, 0);
    assert_eq!(ack.salt.len(), 16);
    assert!(!ack.server_key.is_empty());
    assert!(ack.time_diff > 0, "server time minus client timestamp 1");
    // Version 5: server_version announced, node_id present.
    let mut c5 = Client::open(&s, kind).await;
    let ack = c5.connect("bob", "tb", 0, 5).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.server_version, Some(5));
    assert_eq!(ack.node_id, 1);
    // A version above the server's is capped.
    let mut c9 = Client::open(&s, kind).await;
    let ack = c9.connect("carol", "tc", 1, 9).await;
    assert_eq!(ack.server_version, Some(packet::LATEST_VERSION));
    // PING -> PONG on every session.
    for c in [&mut c, &mut c5, &mut c9] {
        c.write(&Packet::Ping).await;
        assert_eq!(c.read().await, Some(Packet::Pong));
    }
}

async fn send(kind: Kind) {
    let (_dir, s) = server_with_tokens().await;
    let mut c = Client::open(&s, kind).await;
    assert_eq!(c.connect("alice", "ta", 1, 2).await.reason_code, ReasonCode::SUCCESS);
    let first = c.send(7, "bob", 1, "hello bob").await;
    assert_eq!((first.reason_code, first.client_seq, first.message_seq), (ReasonCode::SUCCESS, 7, 1), "{first:?}");
    assert!(first.message_id > 0);
    let second = c.send(8, "bob", 1, "second").await;
    assert_eq!((second.reason_code, second.client_seq, second.message_seq), (ReasonCode::SUCCESS, 8, 2), "{second:?}");
    assert_ne!(first.message_id, second.message_id);
    // Stored as plaintext in the person channel both sides name by the other's uid.
    let want = vec![(1, "hello bob".to_owned()), (2, "second".to_owned())];
    assert_eq!(history(&s, "alice", "bob").await, want);
    assert_eq!(history(&s, "bob", "alice").await, want);

    // A retry with the same client_msg_no is answered from the original.
    let again = c.send(8, "bob", 1, "second").await;
    assert_eq!((again.message_id, again.message_seq), (second.message_id, 2));

    // Group: not a member -> 3; after joining -> success.
    let (status, v) = s.post("/channel", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["bob"]})).await;
    assert_eq!(status, 200, "{v}");
    let ack = c.send(9, "g1", 2, "let me in").await;
    assert_eq!((ack.reason_code, ack.client_seq, ack.message_seq), (ReasonCode::SUBSCRIBER_NOT_EXIST, 9, 0));
    let (status, v) = s.post("/channel/subscriber_add", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["alice"]})).await;
    assert_eq!(status, 200, "{v}");
    let ack = c.send(10, "g1", 2, "in").await;
    assert_eq!((ack.reason_code, ack.message_seq), (ReasonCode::SUCCESS, 1));

    // A forged msg_key -> 9, and the session goes on.
    let Packet::Send(mut forged) = c.send_packet(11, "bob", 1, "forged") else { unreachable!() };
    forged.msg_key = "0".repeat(32);
    c.write(&Packet::Send(forged)).await;
    let Some(Packet::Sendack(ack)) = c.read().await else { panic!("expected SENDACK") };
    assert_eq!((ack.reason_code, ack.client_seq), (ReasonCode::PAYLOAD_DECODE_ERROR, 11));

    // Several packets in one write are all answered, in order.
    let mut batch = Vec::new();
    for (i, p) in [c.send_packet(12, "bob", 1, "b1"), Packet::Ping, c.send_packet(13, "bob", 1, "b2")].iter().enumerate() {
        packet::encode(p, c.version, &mut batch).unwrap_or_else(|e| panic!("encode {i}: {e}"));
    }
    c.write_raw(batch).await;
    let Some(Packet::Sendack(a)) = c.read().await else { panic!("expected SENDACK") };
    assert_eq!((a.client_seq, a.message_seq), (12, 3));
    assert_eq!(c.read().await, Some(Packet::Pong));
    let Some(Packet::Sendack(b)) = c.read().await else { panic!("expected SENDACK") };
    assert_eq!((b.client_seq, b.message_seq), (13, 4));
    assert_eq!(history(&s, "bob", "alice").await.len(), 4);
}

async fn garbage(kind: Kind) {
    let (_dir, s) = server_with_tokens().await;
    // Before CONNECT: a packet of an unknown type.
    let mut c = Client::open(&s, kind).await;
    c.write_raw(vec![0xf0, 0x01, 0x00]).await;
    assert!(matches!(c.read().await, Some(Packet::Disconnect(_))), "DISCONNECT before close");
    assert_eq!(c.read().await, None);
    // First packet not CONNECT.
    let mut c = Client::open(&s, kind).await;
    c.write(&Packet::Ping).await;
    assert!(matches!(c.read().await, Some(Packet::Disconnect(_))));
    assert_eq!(c.read().await, None);
    // After CONNECT: a packet only servers send.
    let mut c = Client::open(&s, kind).await;
    assert_eq!(c.connect("alice", "ta", 1, 5).await.reason_code, ReasonCode::SUCCESS);
    c.write(&Packet::Connack(ConnackPacket::default())).await;
    let Some(Packet::Disconnect(d)) = c.read().await else { panic!("expected DISCONNECT") };
    assert_eq!(d.reason_code, ReasonCode::PAYLOAD_DECODE_ERROR);
    assert_eq!(c.read().await, None);
    // After CONNECT: a length varint longer than 4 bytes.
    let mut c = Client::open(&s, kind).await;
    assert_eq!(c.connect("alice", "ta", 1, 5).await.reason_code, ReasonCode::SUCCESS);
    c.write_raw(vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    assert!(matches!(c.read().await, Some(Packet::Disconnect(_))));
    assert_eq!(c.read().await, None);
}

#[tokio::test]
async fn tcp_auth_connack_and_ping() {
    auth(Kind::Tcp).await;
}

#[tokio::test]
async fn ws_auth_connack_and_ping() {
    auth(Kind::Ws).await;
}

#[tokio::test]
async fn tcp_send_gets_sendack_and_is_stored() {
    send(Kind::Tcp).await;
}

#[tokio::test]
async fn ws_send_gets_sendack_and_is_stored() {
    send(Kind::Ws).await;
}

#[tokio::test]
async fn tcp_garbage_gets_disconnect() {
    garbage(Kind::Tcp).await;
}

#[tokio::test]
async fn ws_garbage_gets_disconnect() {
    garbage(Kind::Ws).await;
}

/// Over WebSocket every server packet is its own binary message, even when several answers are
/// written together.
#[tokio::test]
async fn ws_one_packet_per_message() {
    let (_dir, s) = server_with_tokens().await;
    let mut c = Client::logged_in(&s, Kind::Ws, "alice", "ta", 1, 2).await;
    let before = c.ws_messages;
    let mut batch = Vec::new();
    for _ in 0..3 {
        packet::encode(&Packet::Ping, c.version, &mut batch).expect("encode");
    }
    c.write_raw(batch).await;
    for _ in 0..3 {
        assert_eq!(c.read().await, Some(Packet::Pong));
    }
    assert_eq!(c.ws_messages - before, 3, "three PONGs, three messages");
    let _: SocketAddr = s.ws;
}

/// The next packet, which must be a RECV; acknowledges it as the SDKs do and returns it with its
/// decrypted payload.
pub(crate) async fn recv(c: &mut Client) -> (rookery::gateway::packet::RecvPacket, String) {
    let (r, text) = recv_no_ack(c).await;
    c.write(&Packet::Recvack(RecvackPacket { header: r.header, message_id: r.message_id, message_seq: r.message_seq })).await;
    (r, text)
}

/// The next packet, which must be a RECV, without acknowledging it.
async fn recv_no_ack(c: &mut Client) -> (rookery::gateway::packet::RecvPacket, String) {
    match c.read().await {
        Some(Packet::Recv(r)) => {
            let plain = c.cipher.as_ref().expect("connected").open_recv(&r).expect("RECV verifies and decrypts with this session's key");
            (r, String::from_utf8(plain).expect("utf8"))
        }
        other => panic!("expected RECV, got {other:?}"),
    }
}

/// The server reads a TCP session into a small buffer that grows as bytes arrive: a SEND far larger
/// than it, and many SENDs written at once, each arrive whole and in order.
#[tokio::test]
async fn large_and_back_to_back_sends_over_tcp_arrive_whole() {
    let (_dir, s) = server_with_tokens().await;
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 2).await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;

    let mut texts = vec![format!("big {}", "y".repeat(20_000))];
    texts.extend((1..60).map(|i| format!("burst {i}")));
    texts.push(format!("big again {}", "z".repeat(9_000)));
    let mut bytes = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let p = alice.send_packet(i as u32 + 1, "bob", 1, text);
        bytes.extend(packet::encode_to_vec(&p, alice.version).expect("encode"));
    }
    alice.write_raw(bytes).await;
    for i in 0..texts.len() {
        match alice.read().await {
            Some(Packet::Sendack(ack)) => assert_eq!((ack.client_seq, ack.reason_code), (i as u32 + 1, ReasonCode::SUCCESS)),
            other => panic!("expected SENDACK {}, got {other:?}", i + 1),
        }
    }
    for (i, want) in texts.iter().enumerate() {
        let (r, text) = recv(&mut bob).await;
        assert_eq!((r.message_seq, text.len()), (i as u64 + 1, want.len()));
        assert!(text == *want, "message {} arrived altered", i + 1);
    }
}

/// A SEND reaches every other online session of the recipients (the receiver over TCP and WS, the
/// sender's other device) sealed with each session's own key; the sending session gets only SENDACK.
#[tokio::test]
async fn send_is_delivered_to_online_sessions() {
    let (_dir, s) = server_with_tokens().await;
    let (status, v) = s.post("/user/token", &json!({"uid": "alice", "token": "ta0", "device_flag": 0, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 2).await;
    let mut alice_app = Client::logged_in(&s, Kind::Ws, "alice", "ta0", 0, 6).await;
    let mut bob_tcp = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    // bob's second session is a web one: two master logins of one device flag would replace each other.
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tbw", "device_flag": 1, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let mut bob_ws = Client::logged_in(&s, Kind::Ws, "bob", "tbw", 1, 2).await;

    let ack = alice.send(1, "bob", 1, "hi bob").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    for bob in [&mut bob_tcp, &mut bob_ws] {
        let (r, text) = recv(bob).await;
        assert_eq!(text, "hi bob");
        assert_eq!((r.from_uid.as_str(), r.channel_id.as_str(), r.channel_type), ("alice", "alice", 1));
        assert_eq!((r.message_id, r.message_seq, r.client_msg_no.as_str()), (ack.message_id, 1, "cmn-1"));
        assert!(r.timestamp > 0);
    }
    let (r, text) = recv(&mut alice_app).await;
    assert_eq!((r.channel_id.as_str(), text.as_str()), ("bob", "hi bob"), "the sender's other device sees the peer's channel");
    // Nothing more for the sending session: its next packet answers its PING.
    alice.write(&Packet::Ping).await;
    assert_eq!(alice.read().await, Some(Packet::Pong));

    // A retry is not delivered again.
    let again = alice.send(1, "bob", 1, "hi bob").await;
    assert_eq!(again.message_id, ack.message_id);
    bob_tcp.write(&Packet::Ping).await;
    assert_eq!(bob_tcp.read().await, Some(Packet::Pong));

    // Group: every online subscriber but the sending session.
    let (status, v) = s.post("/channel", &json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["alice", "bob", "carol"]})).await;
    assert_eq!(status, 200, "{v}");
    let ack = bob_ws.send(5, "g2", 2, "hello group").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    for c in [&mut alice, &mut alice_app, &mut bob_tcp] {
        let (r, text) = recv(c).await;
        assert_eq!((r.from_uid.as_str(), r.channel_id.as_str(), r.channel_type, text.as_str()), ("bob", "g2", 2, "hello group"));
        assert_eq!(r.message_seq, 1);
    }

    // A closed session leaves the registry: sending to it still works.
    drop(bob_tcp);
    drop(bob_ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(alice.send(2, "bob", 1, "offline").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(history(&s, "bob", "alice").await.len(), 2);
}

/// Messages sent through the REST API reach online sessions too, and `/user/onlinestatus` lists
/// exactly the sessions that are connected.
#[tokio::test]
async fn rest_sends_are_delivered_and_presence_is_reported() {
    let (_dir, s) = server_with_tokens().await;
    let (status, v) = s.post("/user/onlinestatus", &json!(["bob", "carol"])).await;
    assert_eq!((status, v), (200, json!([])));
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let (status, v) = s.post("/user/onlinestatus", &json!(["bob", "carol"])).await;
    assert_eq!((status, v), (200, json!([{"uid": "bob", "device_flag": 0, "online": 1}])));

    let (status, v) = s
        .post(
            "/message/send",
            &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": crate::support::b64("from the api"), "header": {"red_dot": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (r, text) = recv(&mut bob).await;
    assert_eq!((text.as_str(), r.from_uid.as_str(), r.channel_id.as_str()), ("from the api", "alice", "alice"));
    assert_eq!((r.message_id, r.message_seq), (v["message_id"].as_i64().unwrap(), 1));
    assert!(r.header.red_dot);

    drop(bob);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, v) = s.post("/user/onlinestatus", &json!(["bob"])).await;
    assert_eq!((status, v), (200, json!([])));
}

/// The audit trail names a client's own sends: `uid` finds them next to the user's stream, `actor`
/// by the client's uid, with the session's peer address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_uid_and_actor_find_a_clients_own_sends() {
    let (dir, s) = server_with_tokens().await;
    let (status, v) = s.post("/channel", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["alice", "bob"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut c = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 2).await;
    assert_eq!(c.send(1, "bob", 1, "to bob").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(c.send(2, "g1", 2, "to g1").await.reason_code, ReasonCode::SUCCESS);

    let (status, all) = s.get("/audit/events?order=asc&limit=1000").await;
    assert_eq!(status, 200, "{all}");
    let events = all["events"].as_array().unwrap();
    // Both messages, and the conversations the first person message opened for both parties.
    let by_client: Vec<&serde_json::Value> = events.iter().filter(|e| e["actor"]["type"] == "client").collect();
    let kinds: Vec<&str> = by_client.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "channel.message_appended").count(), 2, "{all}");
    assert_eq!(kinds.iter().filter(|k| **k == "user.conversation_joined").count(), 2, "{all}");
    for e in &by_client {
        assert_eq!(e["actor"], json!({"type": "client", "uid": "alice", "device_flag": 1}));
        assert!(e["source"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
    }
    let want = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().filter(|e| pred(e)).map(|e| e["position"].clone()).collect::<Vec<_>>();
    let got = |v: &serde_json::Value| v["events"].as_array().unwrap().iter().map(|e| e["position"].clone()).collect::<Vec<_>>();

    let (_, by_uid) = s.get("/audit/events?uid=alice&order=asc").await;
    let alice = want(&|e| e["stream"] == json!({"type": "user", "uid": "alice"}) || e["actor"]["uid"] == "alice");
    assert!(alice.len() >= 6, "her token, her conversations, both sends, bob's new conversation: {by_uid}");
    assert_eq!(got(&by_uid), alice);
    let (_, by_actor) = s.get("/audit/events?actor=client:alice&order=asc").await;
    assert_eq!(got(&by_actor), want(&|e| e["actor"]["uid"] == "alice"));
    let (_, carol) = s.get("/audit/events?uid=carol").await;
    assert_eq!(got(&carol), want(&|e| e["stream"]["uid"] == "carol"), "carol has a token but sent nothing");
    assert_eq!(carol["events"][0]["actor"], json!({"type": "api", "credential": "local"}), "no credential configured: local");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["audit", "--json", "--order", "asc", "--uid", "alice", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["events"], by_uid["events"], "the CLI on the live data directory agrees");
}

/// A client that is still connected answers PING with PONG.
async fn assert_alive(c: &mut Client, who: &str) {
    c.write(&Packet::Ping).await;
    assert_eq!(c.read().await, Some(Packet::Pong), "{who} is still connected");
}

/// A kicked client reads DISCONNECT with reason 12 (connectKick), then the server closes.
async fn assert_kicked(c: &mut Client, who: &str) {
    match c.read().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::CONNECT_KICK, "{who}: {d:?}"),
        other => panic!("{who}: expected DISCONNECT 12, got {other:?}"),
    }
    assert_eq!(c.read().await, None, "{who} is closed after its DISCONNECT");
}

async fn online(s: &Server, uid: &str) -> Vec<u64> {
    let (status, v) = s.post("/user/onlinestatus", &json!([uid])).await;
    assert_eq!(status, 200, "{v}");
    let mut flags: Vec<u64> = v.as_array().expect("array").iter().map(|o| o["device_flag"].as_u64().expect("flag")).collect();
    flags.sort_unstable();
    flags
}

/// Spec §5: a master login replaces the sessions of the same uid and device flag — with DISCONNECT 12
/// when they come from another device id, with a bare close when the same device logs in again; a
/// slave login replaces only the session of its own device id; other device flags never conflict.
#[tokio::test]
async fn device_conflicts_kick_by_flag_and_level() {
    let (_dir, s) = server_with_tokens().await;
    // alice: web (1) master; also an app (0) master token.
    let (status, v) = s.post("/user/token", &json!({"uid": "alice", "token": "ta0", "device_flag": 0, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let mut web1 = Client::open(&s, Kind::Tcp).await;
    assert_eq!(web1.connect_device("alice", "ta", 1, 2, "w1").await.reason_code, ReasonCode::SUCCESS);
    let mut app = Client::open(&s, Kind::Tcp).await;
    assert_eq!(app.connect_device("alice", "ta0", 0, 5, "a1").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(online(&s, "alice").await, vec![0, 1]);

    // A second web login (another device id, over WebSocket) kicks the first web session only.
    let mut web2 = Client::open(&s, Kind::Ws).await;
    assert_eq!(web2.connect_device("alice", "ta", 1, 2, "w2").await.reason_code, ReasonCode::SUCCESS);
    assert_kicked(&mut web1, "the first web session").await;
    assert_alive(&mut app, "the app session (other device flag)").await;
    assert_alive(&mut web2, "the new web session").await;
    assert_eq!(online(&s, "alice").await, vec![0, 1]);

    // The kicked session receives nothing more; the new one gets what is sent.
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    assert_eq!(bob.send(1, "alice", 1, "to the new web session").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(recv(&mut web2).await.1, "to the new web session");

    // The same device id logging in again (a reconnect): the stale session is closed without
    // DISCONNECT, so that nothing tells that client to stop reconnecting.
    let mut web2_again = Client::open(&s, Kind::Tcp).await;
    assert_eq!(web2_again.connect_device("alice", "ta", 1, 2, "w2").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(web2.read().await, None, "the stale session is closed without a packet");
    assert_alive(&mut web2_again, "the reconnected session").await;

    // carol's web token becomes slave: slave logins from other device ids coexist...
    let (status, v) = s.post("/user/token", &json!({"uid": "carol", "token": "tc", "device_flag": 1, "device_level": 0})).await;
    assert_eq!(status, 200, "{v}");
    let mut c1 = Client::open(&s, Kind::Tcp).await;
    assert_eq!(c1.connect_device("carol", "tc", 1, 5, "c1").await.reason_code, ReasonCode::SUCCESS);
    let mut c2 = Client::open(&s, Kind::Ws).await;
    assert_eq!(c2.connect_device("carol", "tc", 1, 5, "c2").await.reason_code, ReasonCode::SUCCESS);
    assert_alive(&mut c1, "carol's first slave session").await;
    assert_alive(&mut c2, "carol's second slave session").await;
    assert_eq!(online(&s, "carol").await, vec![1, 1]);
    // ...and a slave login from an existing device id replaces only that device's session.
    let mut c1_again = Client::open(&s, Kind::Tcp).await;
    assert_eq!(c1_again.connect_device("carol", "tc", 1, 5, "c1").await.reason_code, ReasonCode::SUCCESS);
    assert_eq!(c1.read().await, None, "the same slave device's old session is closed");
    assert_alive(&mut c2, "the other slave device").await;
    assert_alive(&mut c1_again, "the reconnected slave device").await;
    assert_eq!(online(&s, "carol").await, vec![1, 1]);
}

/// `/user/token` at master level kicks the device's sessions (a slave token does not);
/// `/user/device_quit` kicks them and removes the token, so the device cannot log in again.
/// Requests that fail validation change nothing.
#[tokio::test]
async fn rest_token_and_device_quit_kick_sessions() {
    let (_dir, s) = server_with_tokens().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut alice = Client::logged_in(&s, Kind::Ws, "alice", "ta", 1, 2).await;

    // A slave token for bob's app: the running session stays.
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tb2", "device_flag": 0, "device_level": 0})).await;
    assert_eq!(status, 200, "{v}");
    assert_alive(&mut bob, "bob after a slave token").await;
    // A master token for another device flag: still stays.
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tbw", "device_flag": 1, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    assert_alive(&mut bob, "bob after a master token of another flag").await;
    // A malformed token request: 400, nobody kicked.
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tb3", "device_flag": 0, "device_level": 2})).await;
    assert_eq!(status, 400, "{v}");
    assert_alive(&mut bob, "bob after a refused token request").await;
    // A master token for bob's app: DISCONNECT 12 and close.
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tb3", "device_flag": 0, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    assert_kicked(&mut bob, "bob after a master token").await;
    assert_eq!(online(&s, "bob").await, Vec::<u64>::new());
    assert_alive(&mut alice, "alice (another uid)").await;

    // The new token logs in; the old one does not.
    let mut old = Client::open(&s, Kind::Tcp).await;
    assert_eq!(old.connect("bob", "tb", 0, 5).await.reason_code, ReasonCode::AUTH_FAIL);
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb3", 0, 5).await;

    // device_quit with a bad flag: 400, nothing changes.
    let (status, v) = s.post("/user/device_quit", &json!({"uid": "bob", "device_flag": 7})).await;
    assert_eq!(status, 400, "{v}");
    assert_alive(&mut bob, "bob after a refused device_quit").await;
    // device_quit of another flag leaves the app session alone.
    let (status, v) = s.post("/user/device_quit", &json!({"uid": "bob", "device_flag": 1})).await;
    assert_eq!(status, 200, "{v}");
    assert_alive(&mut bob, "bob after the web device quit").await;
    // device_quit of the app: DISCONNECT 12, close, and the token no longer logs in.
    let (status, v) = s.post("/user/device_quit", &json!({"uid": "bob", "device_flag": 0})).await;
    assert_eq!(status, 200, "{v}");
    assert_kicked(&mut bob, "bob after device_quit").await;
    let mut again = Client::open(&s, Kind::Tcp).await;
    assert_eq!(again.connect("bob", "tb3", 0, 5).await.reason_code, ReasonCode::AUTH_FAIL);
    assert_eq!(again.read().await, None);

    // device_quit -1: every device of alice.
    let (status, v) = s.post("/user/device_quit", &json!({"uid": "alice", "device_flag": -1})).await;
    assert_eq!(status, 200, "{v}");
    assert_kicked(&mut alice, "alice after device_quit -1").await;
    let mut again = Client::open(&s, Kind::Ws).await;
    assert_eq!(again.connect("alice", "ta", 1, 2).await.reason_code, ReasonCode::AUTH_FAIL);
}

/// A RECV that is not acknowledged within `recvack_timeout_ms` comes again with the DUP flag, at most
/// `recv_retries` times, then the session gives up on it; a RECVACK stops the re-sending. Over TCP and
/// WebSocket, with a person and a REST-sent message.
#[tokio::test]
async fn unacknowledged_recv_is_resent_with_dup() {
    const TIMEOUT_MS: u64 = 1000;
    let (_dir, s) = server_with_tokens_env(&[("ROOKERY_RECVACK_TIMEOUT_MS", "1000"), ("ROOKERY_RECV_RETRIES", "2")]).await;
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tbw", "device_flag": 1, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    // bob's app never acknowledges; bob's web session acknowledges everything.
    let mut silent = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut acking = Client::logged_in(&s, Kind::Ws, "bob", "tbw", 1, 2).await;

    let ack = alice.send(1, "bob", 1, "ack me").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let (first, text) = recv_no_ack(&mut silent).await;
    assert_eq!((text.as_str(), first.header.dup, first.message_id), ("ack me", false, ack.message_id));
    let (r, text) = recv(&mut acking).await;
    assert_eq!((text.as_str(), r.header.dup), ("ack me", false));

    // The silent session gets the same message twice more, DUP set, still verifiable and decryptable.
    for n in 1..=2 {
        let (dup, text) = recv_no_ack(&mut silent).await;
        assert!(dup.header.dup, "retry {n} has DUP");
        assert_eq!((dup.message_id, dup.message_seq, text.as_str()), (first.message_id, first.message_seq, "ack me"), "retry {n}");
        assert_eq!(dup.header.red_dot, first.header.red_dot, "other flags as first sent");
    }
    // Then it gives up: after three more timeouts the next packet answers a PING.
    tokio::time::sleep(Duration::from_millis(3 * TIMEOUT_MS)).await;
    assert_alive(&mut silent, "the silent session after the retries").await;
    // The acknowledging session got nothing more.
    assert_alive(&mut acking, "the acknowledging session").await;

    // A late RECVACK is ignored, and an acknowledged retry stops the re-sending: a REST send, acked
    // by the silent client only after its first DUP copy.
    silent.write(&Packet::Recvack(RecvackPacket { header: first.header, message_id: first.message_id, message_seq: first.message_seq })).await;
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": crate::support::b64("rest")})).await;
    assert_eq!(status, 200, "{v}");
    let (r, _) = recv_no_ack(&mut silent).await;
    assert!(!r.header.dup);
    let (r2, _) = recv(&mut acking).await;
    assert_eq!((r2.message_id, r2.header.dup), (r.message_id, false));
    let (dup, _) = recv(&mut silent).await;
    assert!(dup.header.dup && dup.message_id == r.message_id);
    tokio::time::sleep(Duration::from_millis(2 * TIMEOUT_MS)).await;
    assert_alive(&mut silent, "the silent session after acknowledging the retry").await;
    assert_alive(&mut acking, "the acknowledging session").await;
}

/// Back-pressure: a TCP client that stops reading while messages keep coming is disconnected once its
/// outbound queue is full (no DISCONNECT: it should reconnect and sync), instead of silently missing
/// RECVs; another session of the same user keeps receiving every message, in order, and everything is
/// stored.
#[tokio::test]
async fn slow_reader_is_disconnected_and_others_receive_everything() {
    let env = [("ROOKERY_OUTBOUND_QUEUE", "32"), ("ROOKERY_DURABILITY", "buffered")];
    let (_dir, s) = server_with_tokens_env(&env).await;
    let (status, v) = s.post("/user/token", &json!({"uid": "bob", "token": "tbw", "device_flag": 1, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let mut slow = Client::open_small_buffer(&s).await;
    assert_eq!(slow.connect("bob", "tb", 0, 5).await.reason_code, ReasonCode::SUCCESS);
    let mut fast = Client::logged_in(&s, Kind::Tcp, "bob", "tbw", 1, 5).await;
    assert_eq!(online(&s, "bob").await, vec![0, 1]);

    // The fast client reads (and acknowledges) until the closing message.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let (r, text) = recv(&mut fast).await;
            let end = text == "end";
            got.push((r.message_seq, text));
            if end {
                return (got, fast);
            }
        }
    });

    // 16 KB messages from the API until the slow session is gone (bounded, so the test cannot spin).
    let filler = "x".repeat(16 * 1024);
    let mut sent = Vec::new();
    let mut gone = false;
    for i in 0..2000 {
        let text = format!("{i} {filler}");
        let (status, v) =
            s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": crate::support::b64(&text)})).await;
        assert_eq!(status, 200, "{v}");
        sent.push(text);
        if i % 10 == 9 && online(&s, "bob").await == vec![1] {
            gone = true;
            break;
        }
    }
    assert!(gone, "the slow reader was still online after {} messages", sent.len());
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": crate::support::b64("end")})).await;
    assert_eq!(status, 200, "{v}");
    sent.push("end".into());

    // The other session got every message exactly once, in order.
    let (got, mut fast) = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("fast reader finished").expect("reader task");
    let want: Vec<(u64, String)> = sent.iter().enumerate().map(|(i, t)| (i as u64 + 1, t.clone())).collect();
    assert_eq!(got.len(), want.len(), "the fast session got every message");
    assert!(got == want, "the fast session got every message in order");
    assert_alive(&mut fast, "the fast session").await;

    // The slow socket ends (after whatever the kernel still held), with no DISCONNECT to stop a reconnect.
    let Socket::Tcp(mut stream) = slow.socket else { unreachable!() };
    let mut tail = slow.input;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closed the slow reader's socket");
    let mut off = 0;
    while let Ok((p, len)) = packet::decode(&tail[off..], 5) {
        assert!(!matches!(p, Packet::Disconnect(_)), "no DISCONNECT for a slow reader");
        off += len;
    }
    // Nothing was lost: the history has every message.
    let (status, v) = s.post("/channel/messagesync", &json!({"login_uid": "bob", "channel_id": "alice", "channel_type": 1, "limit": 10000})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messages"].as_array().expect("messages").len(), sent.len());
}

/// A JSON-RPC client over WebSocket (text messages), as WuKongIM's EasySDK speaks it.
struct Rpc {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl Rpc {
    async fn open(s: &Server) -> Rpc {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}", s.ws)).await.expect("ws connect");
        Rpc { ws }
    }

    async fn send(&mut self, v: serde_json::Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("ws write");
    }

    /// The next JSON message, or `None` once the server closed.
    async fn next(&mut self) -> Option<serde_json::Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).expect("the server writes JSON")),
                    Some(Ok(Message::Binary(b))) => panic!("binary message on a JSON-RPC session: {b:?}"),
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .expect("server answered in time")
    }
}

/// JSON-RPC over WebSocket (spec §3): a session whose first message is JSON speaks JSON-RPC,
/// unencrypted, and interoperates with WKProto sessions: connect, send, recv, recvack, ping, and the
/// errors for a wrong token, a bad first message and bad requests after connecting; a kick arrives as a
/// `disconnect` notification.
#[tokio::test]
async fn json_rpc_over_websocket() {
    let (_dir, s) = server_with_tokens().await;
    let b64 = |t: &str| crate::support::b64(t);

    // A wrong token: an error response with reason code 2, then the server closes.
    let mut bad = Rpc::open(&s).await;
    bad.send(json!({"jsonrpc": "2.0", "method": "connect", "id": "c", "params": {"uid": "alice", "token": "wrong", "deviceFlag": 1}})).await;
    let r = bad.next().await.expect("a response");
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!("c"), json!(2)), "{r}");
    assert_eq!(bad.next().await, None);
    // A first message that is not connect: an error response, a disconnect notification, a close.
    let mut bad = Rpc::open(&s).await;
    bad.send(json!({"jsonrpc": "2.0", "method": "send", "id": "s", "params": {"channelId": "bob", "channelType": 1, "payload": b64("x")}})).await;
    let r = bad.next().await.expect("a response");
    assert_eq!(r["id"], json!("s"));
    assert!(r["error"]["message"].as_str().expect("message").contains("connect"), "{r}");
    assert_eq!(bad.next().await.expect("a notification")["method"], json!("disconnect"));
    assert_eq!(bad.next().await, None);
    // Not JSON at all after the opening brace: disconnect notification and close.
    let mut bad = Rpc::open(&s).await;
    bad.ws.send(Message::text("{oops")).await.expect("write");
    bad.ws.send(Message::text("}")).await.expect("write");
    assert_eq!(bad.next().await.expect("a notification")["method"], json!("disconnect"));
    assert_eq!(bad.next().await, None);

    // alice over JSON-RPC, bob over WKProto.
    let mut alice = Rpc::open(&s).await;
    alice.send(json!({"jsonrpc": "2.0", "method": "connect", "id": "1", "params": {"uid": "alice", "token": "ta", "deviceFlag": 1, "deviceId": "rpc1", "clientTimestamp": 1}})).await;
    let r = alice.next().await.expect("connect response");
    assert_eq!((r["id"].clone(), r["result"]["reasonCode"].clone()), (json!("1"), json!(1)), "{r}");
    assert!(r["result"].get("serverKey").is_none(), "JSON-RPC is not encrypted: {r}");
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;

    // send -> result with the stored id and seq; bob gets it as an encrypted RECV.
    alice.send(json!({"jsonrpc": "2.0", "method": "send", "id": "2", "params": {"header": {"redDot": true}, "clientMsgNo": "rpc-m1", "channelId": "bob", "channelType": 1, "payload": b64("hi from json")}})).await;
    let r = alice.next().await.expect("send response");
    assert_eq!((r["id"].clone(), r["result"]["reasonCode"].clone(), r["result"]["messageSeq"].clone()), (json!("2"), json!(1), json!(1)), "{r}");
    let message_id: i64 = r["result"]["messageId"].as_str().expect("messageId is a string").parse().expect("decimal");
    let (recv_bob, text) = recv(&mut bob).await;
    assert_eq!(
        (text.as_str(), recv_bob.message_id, recv_bob.from_uid.as_str(), recv_bob.client_msg_no.as_str()),
        ("hi from json", message_id, "alice", "rpc-m1")
    );
    assert!(recv_bob.header.red_dot);

    // bob -> alice arrives as a recv notification with the plaintext in base64.
    let ack = bob.send(3, "alice", 1, "hi from wkproto").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let n = alice.next().await.expect("recv notification");
    assert_eq!(n["method"], json!("recv"), "{n}");
    assert!(n.get("id").is_none());
    let p = &n["params"];
    assert_eq!((p["fromUid"].clone(), p["channelId"].clone(), p["channelType"].clone()), (json!("bob"), json!("bob"), json!(1)));
    assert_eq!(
        (p["messageId"].clone(), p["messageSeq"].clone(), p["payload"].clone()),
        (json!(ack.message_id.to_string()), json!(2), json!(b64("hi from wkproto")))
    );
    alice.send(json!({"jsonrpc": "2.0", "method": "recvack", "params": {"messageId": p["messageId"], "messageSeq": 2}})).await;

    // ping -> a response with the id; a bad request after connecting is refused and the session goes on.
    alice.send(json!({"jsonrpc": "2.0", "method": "ping", "id": "p1"})).await;
    assert_eq!(alice.next().await, Some(json!({"jsonrpc": "2.0", "id": "p1"})));
    alice.send(json!({"jsonrpc": "2.0", "method": "send", "id": "bad", "params": {"channelId": "bob", "channelType": 1, "payload": "not base64!"}})).await;
    let r = alice.next().await.expect("error response");
    assert_eq!(r["id"], json!("bad"));
    assert!(r["error"]["message"].as_str().expect("message").contains("base64"), "{r}");
    alice.send(json!({"jsonrpc": "2.0", "method": "teleport", "id": "t"})).await;
    assert_eq!(alice.next().await.expect("error response")["id"], json!("t"));
    // A send the rules refuse gets its reason code in the result.
    alice.send(json!({"jsonrpc": "2.0", "method": "send", "id": "3", "params": {"channelId": "nogroup", "channelType": 2, "payload": b64("x")}})).await;
    let r = alice.next().await.expect("send response");
    assert_eq!(r["id"], json!("3"));
    assert_ne!(r["result"]["reasonCode"], json!(1), "{r}");
    alice.send(json!({"jsonrpc": "2.0", "method": "ping", "id": 9})).await;
    assert_eq!(alice.next().await, Some(json!({"jsonrpc": "2.0", "id": 9})));

    // A second master web login of alice kicks the JSON-RPC session: a disconnect notification, a close.
    let mut web = Client::open(&s, Kind::Ws).await;
    assert_eq!(web.connect_device("alice", "ta", 1, 2, "w9").await.reason_code, ReasonCode::SUCCESS);
    let n = alice.next().await.expect("disconnect notification");
    assert_eq!((n["method"].clone(), n["params"]["reasonCode"].clone()), (json!("disconnect"), json!(12)), "{n}");
    assert_eq!(alice.next().await, None);
}

/// A burst of SENDs in one write (more than one batch of 64) is answered completely and in order,
/// while the same session keeps receiving the peer's replies.
#[tokio::test]
async fn burst_of_sends_is_answered_in_order() {
    const N: u32 = 150;
    let (_dir, s) = server_with_tokens().await;
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut burst = Vec::new();
    for seq in 1..=N {
        packet::encode(&alice.send_packet(seq, "bob", 1, &format!("burst {seq}")), alice.version, &mut burst).expect("encode");
    }
    alice.write_raw(burst).await;
    // bob replies to each as it arrives, so alice receives while her burst is being answered.
    let mut seqs = Vec::new();
    let (mut got, mut bob_acks) = (0u32, 0u32);
    while got < N || bob_acks < N {
        match bob.read().await {
            Some(Packet::Recv(r)) => {
                got += 1;
                let text = String::from_utf8(bob.cipher.as_ref().expect("connected").open_recv(&r).expect("opens")).expect("utf8");
                assert_eq!(text, format!("burst {got}"), "bob gets the burst in order");
                seqs.push(r.message_seq);
                bob.write(&Packet::Recvack(RecvackPacket { header: r.header, message_id: r.message_id, message_seq: r.message_seq })).await;
                let reply = bob.send_packet(got, "alice", 1, &format!("re {got}"));
                bob.write(&reply).await;
            }
            Some(Packet::Sendack(a)) => {
                bob_acks += 1;
                assert_eq!((a.client_seq, a.reason_code), (bob_acks, ReasonCode::SUCCESS));
                seqs.push(a.message_seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (mut acks, mut replies) = (Vec::new(), Vec::new());
    while acks.len() < N as usize || replies.len() < N as usize {
        match alice.read().await {
            Some(Packet::Sendack(a)) => acks.push((a.client_seq, a.reason_code, a.message_seq)),
            Some(Packet::Recv(r)) => {
                let text = String::from_utf8(alice.cipher.as_ref().expect("connected").open_recv(&r).expect("opens")).expect("utf8");
                alice.write(&Packet::Recvack(RecvackPacket { header: r.header, message_id: r.message_id, message_seq: r.message_seq })).await;
                replies.push(text);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(acks.iter().enumerate().all(|(i, a)| a.0 == i as u32 + 1 && a.1 == ReasonCode::SUCCESS), "every SENDACK, in order: {acks:?}");
    assert!(acks.windows(2).all(|w| w[0].2 < w[1].2), "increasing message_seq");
    assert_eq!(replies, (1..=N).map(|i| format!("re {i}")).collect::<Vec<_>>(), "every reply, in order");
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=2 * u64::from(N)).collect::<Vec<_>>(), "one channel, every seq once");
}

/// SIGTERM under load: sessions get DISCONNECT 15 before the close, the server exits 0, and every
/// send that was acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_disconnects_sessions_and_loses_no_acknowledged_send() {
    let (dir, mut s) = server_with_tokens().await;
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 4).await;
    let (api, client) = (s.api, reqwest::Client::new());
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let body = json!({"from_uid": "bob", "channel_id": "carol", "channel_type": 1, "payload": base64::engine::general_purpose::STANDARD.encode(format!("t{t}-{i}"))});
                    match client.post(format!("http://{api}/message/send")).json(&body).send().await {
                        Ok(r) if r.status() == 200 => acked.push(r.json::<serde_json::Value>().await.unwrap()["message_seq"].as_u64().unwrap()),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopper = tokio::task::spawn_blocking(move || {
        s.stop();
        s
    });
    match alice.read().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SYSTEM_ERROR, "{d:?}"),
        other => panic!("expected DISCONNECT before the close, got {other:?}"),
    }
    assert_eq!(alice.read().await, None, "then the server closes");
    let _stopped = stopper.await.unwrap();
    let mut acked: Vec<u64> = Vec::new();
    for t in senders {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 10, "sends were in flight: {}", acked.len());

    let s = Server::start(dir.path(), &[]);
    let (_, page) = s.post("/channel/messagesync", &json!({"login_uid": "bob", "channel_id": "carol", "channel_type": 1, "limit": 10000})).await;
    let stored: std::collections::BTreeSet<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["message_seq"].as_u64().unwrap()).collect();
    let missing: Vec<u64> = acked.iter().copied().filter(|q| !stored.contains(q)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Limits answer clearly: SENDACK 22 past the connection's SEND budget (and nothing stored), CONNACK 22
/// past the connections allowed per address (until one closes), HTTP 429 past a credential's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_connection_and_rest_limits_refuse_with_clear_answers() {
    let (_dir, s) =
        server_with_tokens_env(&[("ROOKERY_SEND_RATE_LIMIT", "5"), ("ROOKERY_SEND_RATE_BURST", "5"), ("ROOKERY_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 4).await;
    for i in 1..=20 {
        let p = alice.send_packet(i, "bob", 1, &format!("m{i}"));
        alice.write(&p).await;
    }
    let mut codes = Vec::new();
    while codes.len() < 20 {
        if let Some(Packet::Sendack(a)) = alice.read().await {
            codes.push(a.reason_code);
        }
    }
    let accepted = codes.iter().filter(|c| **c == ReasonCode::SUCCESS).count();
    assert!((5..=7).contains(&accepted), "the burst of 5 (and at most a refill or two): {codes:?}");
    assert!(codes.iter().all(|c| *c == ReasonCode::SUCCESS || *c == ReasonCode::RATE_LIMIT), "{codes:?}");
    assert_eq!(history(&s, "alice", "bob").await.len(), accepted, "refused sends are not stored");

    let second = Client::logged_in(&s, Kind::Ws, "carol", "tc", 1, 4).await;
    let mut third = Client::open(&s, Kind::Tcp).await;
    assert_eq!(third.connect("bob", "tb", 0, 4).await.reason_code, ReasonCode::RATE_LIMIT, "a third connection from 127.0.0.1");
    drop(second);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut retry = Client::open(&s, Kind::Tcp).await;
        if retry.connect("bob", "tb", 0, 4).await.reason_code == ReasonCode::SUCCESS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a closed connection frees its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let r = Server::start(dir.path(), &[("ROOKERY_API_RATE_LIMIT", "1"), ("ROOKERY_API_RATE_BURST", "3")]);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body =
            json!({"from_uid": "ann", "channel_id": "ben", "channel_type": 1, "payload": base64::engine::general_purpose::STANDARD.encode(format!("r{i}"))});
        let resp = client.post(format!("http://{}/message/send", r.api)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        if status == 429 {
            assert_eq!(resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()), Some("1".into()));
            let v: serde_json::Value = resp.json().await.unwrap();
            assert!(v["msg"].as_str().unwrap().contains("rate limit of credential \"local\""), "{v}");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((3..=4).contains(&ok) && statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, page) = r.post("/channel/messagesync", &json!({"login_uid": "ann", "channel_id": "ben", "channel_type": 1, "limit": 100})).await;
    assert_eq!(status, 200, "the budget refills: {page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), ok, "refused requests changed nothing");
}

/// A master device's RECVACK of a command (`sync_once`) received online takes it off the user's
/// command queue, as `/message/syncack` would; a slave device's RECVACK leaves it queued.
#[tokio::test]
async fn a_master_devices_recvack_of_a_command_takes_it_off_the_queue() {
    let (_dir, s) = server_with_tokens().await;
    let (status, v) = s.post("/user/token", &json!({"uid": "carol", "token": "tc", "device_flag": 1, "device_level": 0})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/channel", &json!({"channel_id": "g", "channel_type": 2, "subscribers": ["alice", "bob", "carol"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut carol = Client::logged_in(&s, Kind::Ws, "carol", "tc", 1, 5).await;
    let queued = |uid: &'static str| queued(&s, uid);

    let body = json!({"header": {"sync_once": 1}, "from_uid": "alice", "channel_id": "g", "channel_type": 2, "payload": base64::engine::general_purpose::STANDARD.encode("cmd")});
    let (status, v) = s.post("/message/send", &body).await;
    assert_eq!(status, 200, "{v}");
    let id = v["message_id"].as_i64().expect("message_id");
    assert_eq!(queued("bob").await, vec![id]);
    assert_eq!(queued("carol").await, vec![id]);
    let (r, text) = recv(&mut bob).await;
    assert!(r.header.sync_once && r.message_id == id && text == "cmd", "{r:?}");
    let (r, _) = recv(&mut carol).await;
    assert!(r.header.sync_once && r.message_id == id, "{r:?}");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !queued("bob").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "bob's RECVACK never acknowledged the command");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // carol's RECVACK (a slave device) was sent at the same time and changed nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(queued("carol").await, vec![id]);

    // A command a session was never sent: RECVACKs naming it (learned elsewhere, invented, or repeated
    // by the thousand) do not take it off the queue; only /message/syncack does. Erin is offline when
    // it is queued, and the server pushes no queued command at login (clients sync them).
    let (status, v) = s.post("/user/token", &json!({"uid": "erin", "token": "te", "device_flag": 0, "device_level": 1})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/channel/subscriber_add", &json!({"channel_id": "g", "channel_type": 2, "subscribers": ["erin"]})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/message/send", &body).await;
    assert_eq!(status, 200, "{v}");
    let second = v["message_id"].as_i64().expect("message_id");
    assert_eq!(queued("erin").await, vec![second]);
    let mut erin = Client::logged_in(&s, Kind::Tcp, "erin", "te", 0, 5).await;
    let forged = RecvackPacket { header: Header { sync_once: true, ..Default::default() }, message_id: second, message_seq: 2 };
    for _ in 0..1000 {
        erin.write(&Packet::Recvack(forged.clone())).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queued("erin").await, vec![second], "a RECVACK of a RECV never sent acknowledges nothing");
}

/// A RECVACK that reached the server's socket in time is counted before the RECV would be sent again:
/// the server is frozen (SIGSTOP) after writing a RECV, the client acknowledges it, and the server
/// wakes after the RECVACK deadline with both the retry timer and the acknowledgement ready. It must
/// not write the RECV again (before the fix it did about every other time).
#[tokio::test]
async fn an_acknowledgement_waiting_in_the_socket_prevents_a_duplicate_recv() {
    let (_dir, s) = server_with_tokens_env(&[("ROOKERY_RECVACK_TIMEOUT_MS", "200")]).await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    for round in 0..8 {
        let (status, v) = s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": base64::engine::general_purpose::STANDARD.encode(format!("m{round}"))})).await;
        assert_eq!(status, 200, "{v}");
        let r = match bob.read().await {
            Some(Packet::Recv(r)) => r,
            other => panic!("expected RECV, got {other:?}"),
        };
        s.signal(nix::sys::signal::Signal::SIGSTOP);
        bob.write(&Packet::Recvack(RecvackPacket { header: r.header, message_id: r.message_id, message_seq: r.message_seq })).await;
        tokio::time::sleep(Duration::from_millis(350)).await;
        s.signal(nix::sys::signal::Signal::SIGCONT);
        if let Ok(again) = tokio::time::timeout(Duration::from_millis(400), bob.read()).await {
            panic!("round {round}: the server wrote {again:?} after an acknowledgement it had");
        }
    }
}

/// `POST /conn/kick` ends one connection and tells the client (DISCONNECT, it stops reconnecting);
/// `POST /conn/remove` closes one without telling; the ids are those `/connz` lists.
#[tokio::test]
async fn connections_are_kicked_or_removed_one_by_one_through_the_api() {
    let (_dir, s) = server_with_tokens().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut alice = Client::logged_in(&s, Kind::Ws, "alice", "ta", 1, 5).await;
    let connz: serde_json::Value = s.client().get(format!("http://{}/connz", s.monitor)).send().await.expect("connz").json().await.expect("json");
    let id_of =
        |uid: &str| connz["connections"].as_array().expect("connections").iter().find(|c| c["uid"] == uid).and_then(|c| c["id"].as_u64()).expect("listed");
    let (bob_id, alice_id) = (id_of("bob"), id_of("alice"));

    let (status, v) = s.post("/conn/kick", &json!({"uid": "bob", "conn_id": alice_id})).await;
    assert_eq!(status, 404, "not bob's connection: {v}");
    let (status, v) = s.post("/conn/kick", &json!({"uid": "bob", "conn_id": bob_id, "node_id": 7})).await;
    assert_eq!(status, 404, "another node: {v}");
    assert_eq!(s.post("/conn/kick", &json!({"uid": "bob"})).await.0, 400);

    let (status, v) = s.post("/conn/kick", &json!({"uid": "bob", "conn_id": bob_id, "node_id": 1})).await;
    assert_eq!((status, v), (200, json!({"status": 200})));
    match bob.read().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::CONNECT_KICK),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert_eq!(s.post("/conn/remove", &json!({"uid": "alice", "conn_id": alice_id})).await.0, 200);
    assert!(alice.read().await.is_none(), "closed without a DISCONNECT");
    // Their tokens still work: the clients may come back.
    let _back = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
}
