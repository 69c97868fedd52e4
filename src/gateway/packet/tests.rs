//! Codec tests: fixed byte vectors from the spec and from the npm SDK 1.0.4 captures, invalid input,
//! round-trip properties for every packet type and version, and a fuzz-like property on arbitrary
//! and mutated bytes.

use proptest::prelude::*;

use super::*;

/// Builds expected packet bytes from the annotated dumps: hex for numbers, length-prefixed strings,
/// raw ASCII for payloads.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn hex(mut self, hex: &str) -> Self {
        self.0.extend(unhex(hex));
        self
    }

    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    fn raw(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    let hex: String = hex.chars().filter(|c| !c.is_whitespace() && *c != '|').collect();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn enc(p: &Packet, version: u8) -> Vec<u8> {
    encode_to_vec(p, version).unwrap()
}

/// Encodes `p`, compares with `bytes`, and decodes `bytes` back to `p`.
fn assert_vector(p: &Packet, version: u8, bytes: &[u8]) {
    assert_eq!(hexs(&enc(p, version)), hexs(bytes), "encoding {p:?} at v{version}");
    assert_eq!(decode(bytes, version), Ok((p.clone(), bytes.len())));
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid_reason(r: Result<(Packet, usize), DecodeError>) -> String {
    match r {
        Err(DecodeError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- spec §2.9.2: protocol v5 packets as the JS SDK 1.3.x produces and accepts them ----

const V5_PAYLOAD: &str = "kzEycNQcknkET5ZSkEl95SEluj98GRyDazvMg/66eO8=";
const V5_CLIENT_MSG_NO: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90_0_3";

#[test]
fn spec_v5_connect() {
    let p = Packet::Connect(ConnectPacket {
        version: 5,
        device_flag: 1,
        device_id: "c0ffee00c0ffee00c0ffee00c0ffee00W".into(),
        uid: "u1".into(),
        token: "t1".into(),
        client_timestamp: 1_700_000_000_000,
        client_key: "hlF7wMOf6Ha3ZGy1407gPa9xzLrWdFDBapcK2MvAPn4=".into(),
    });
    let bytes = unhex("10630501002163306666656530306330666665653030633066666565303063306666656530305700027531000274310000018bcfe56800002c686c4637774d4f66364861335a47793134303767506139787a4c7257644644426170634b324d7641506e343d");
    // CONNECT has no version gates: it decodes the same whatever version the caller passes.
    for v in 0..=7 {
        assert_vector(&p, v, &bytes);
    }
    let Packet::Connect(c) = &p else { unreachable!() };
    assert_eq!(decode_connect(&bytes), Ok((c.clone(), bytes.len())));
}

#[test]
fn spec_v5_connack() {
    let p = Packet::Connack(ConnackPacket {
        server_version: Some(5),
        time_diff: -15,
        reason_code: ReasonCode::SUCCESS,
        server_key: "2/ygd0TRqiC1sebr6VaMzxUwnqJ9Zmo98HwJpoCThRI=".into(),
        salt: "k3PzQ9xR7mW2tY5v".into(),
        node_id: 1001,
    });
    assert_vector(
        &p,
        5,
        &unhex("215205fffffffffffffff101002c322f79676430545271694331736562723656614d7a7855776e714a395a6d6f393848774a706f43546852493d00106b33507a51397852376d57327459357600000000000003e9"),
    );
}

#[test]
fn spec_v5_send() {
    let p = Packet::Send(SendPacket {
        header: Header { red_dot: true, ..Header::default() },
        setting: Setting(0),
        client_seq: 1,
        client_msg_no: V5_CLIENT_MSG_NO.into(),
        channel_id: "u2".into(),
        channel_type: 1,
        expire: 0,
        msg_key: "fc2b9106ebbad8db8d68b48a915d4a47".into(),
        payload: V5_PAYLOAD.into(),
        ..SendPacket::default()
    });
    assert_vector(
        &p,
        5,
        &unhex("3282010000000001002461316232633364346535663630373138323933613462356336643765386639305f305f33000275320100000000002066633262393130366562626164386462386436386234386139313564346134376b7a4579634e51636b6e6b4554355a536b456c393553456c756a393847527944617a764d672f3636654f383d"),
    );
}

#[test]
fn spec_sendack_v5_and_v6() {
    let p = Packet::Sendack(SendackPacket {
        header: Header { red_dot: true, ..Header::default() },
        message_id: 1_810_000_000_000_000_001,
        client_seq: 1,
        message_seq: 1,
        reason_code: ReasonCode::SUCCESS,
        client_msg_no: String::new(),
    });
    assert_vector(&p, 5, &unhex("4211191e696903750001000000010000000101"));
    assert_vector(&p, 6, &unhex("4215191e69690375000100000001000000000000000101"));
}

#[test]
fn spec_v5_recv() {
    let p = Packet::Recv(RecvPacket {
        header: Header { red_dot: true, ..Header::default() },
        setting: Setting(0),
        msg_key: "3f004d8af26bee250fc4d768592f6e4b".into(),
        from_uid: "u1".into(),
        channel_id: "u1".into(),
        channel_type: 1,
        expire: 0,
        client_msg_no: V5_CLIENT_MSG_NO.into(),
        message_id: 1_810_000_000_000_000_001,
        message_seq: 1,
        timestamp: 1_700_000_001,
        payload: V5_PAYLOAD.into(),
        ..RecvPacket::default()
    });
    assert_vector(
        &p,
        5,
        &unhex("529201000020336630303464386166323662656532353066633464373638353932663665346200027531000275310100000000002461316232633364346535663630373138323933613462356336643765386639305f305f33191e696903750001000000016553f1016b7a4579634e51636b6e6b4554355a536b456c393553456c756a393847527944617a764d672f3636654f383d"),
    );
}

#[test]
fn spec_v5_recvack_ping_pong_disconnect() {
    let ack = Packet::Recvack(RecvackPacket { header: Header { red_dot: true, ..Header::default() }, message_id: 1_810_000_000_000_000_001, message_seq: 1 });
    assert_vector(&ack, 5, &unhex("620c191e69690375000100000001"));
    for v in 1..=6 {
        assert_vector(&Packet::Ping, v, &[0x70]);
        assert_vector(&Packet::Pong, v, &[0x80]);
    }
    let kick = Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode::CONNECT_KICK, reason: "login in other device".into() });
    assert_vector(&kick, 5, &unhex("90180c00156c6f67696e20696e206f7468657220646576696365"));
}

#[test]
fn ping_and_pong_are_one_byte_whatever_follows_or_their_flags() {
    // A PONG must never take a length byte: the 1.0.4 SDK consumes exactly one byte.
    assert_eq!(decode(&[0x70, 0x80, 0x10], 2), Ok((Packet::Ping, 1)));
    assert_eq!(decode(&[0x8f], 2), Ok((Packet::Pong, 1)));
    assert_eq!(check(&[0x7a]), Ok(1));
}

// ---- jssdk-1.0.4.md: real captures of the npm SDK, protocol version 2 ----

#[test]
fn jssdk_104_connect_v2() {
    let bytes = Bytes::default()
        .hex("10 63 02 01")
        .str("ce6693fe3ba0dbcc328aaaf14909fae2W")
        .str("u1")
        .str("t1")
        .hex("00 00 01 a2 06 c2 82 b3")
        .str("O5QwY5tFhDYW6OxSpBQ/jbZWxMQ9zrL6UneAnTUAuQo=")
        .0;
    let (c, n) = decode_connect(&bytes).unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!((c.version, c.device_flag, c.uid.as_str(), c.token.as_str()), (2, 1, "u1", "t1"));
    assert_eq!(c.client_timestamp, 0x0000_01a2_06c2_82b3);
    assert_vector(&Packet::Connect(c), 2, &bytes);
}

#[test]
fn jssdk_104_connack_v2_has_no_server_version_and_no_node_id() {
    let bytes = Bytes::default().hex("20 49 00 00 00 00 00 00 00 0c 01").str("YzaHfgE1QgNCao3PucaH6TeDmeu50ERF6WFQGcU/JBs=").str("ergbQkxucxPzz9Zv").0;
    let p = Packet::Connack(ConnackPacket {
        server_version: None,
        time_diff: 12,
        reason_code: ReasonCode::SUCCESS,
        server_key: "YzaHfgE1QgNCao3PucaH6TeDmeu50ERF6WFQGcU/JBs=".into(),
        salt: "ergbQkxucxPzz9Zv".into(),
        node_id: 0,
    });
    assert_vector(&p, 2, &bytes);
    // The negotiation helpers give exactly this shape for a version-2 client.
    assert!(!announces_server_version(2));
    assert_eq!(negotiate_version(2), 2);
}

#[test]
fn jssdk_104_send_v2_has_no_expire() {
    let bytes = Bytes::default()
        .hex("32 7b 00 00 00 00 01")
        .str("4277ad41a225bcf486b0f9e46a3b00a33")
        .str("u2")
        .hex("01")
        .str("c8c1f2444f2e9d3c9276ddf0da5c3e81")
        .raw("f9txkwX6CDIGMhDb3d1H1M/0fBOnQtPN3OzD8GyRsjQ=")
        .0;
    let p = Packet::Send(SendPacket {
        header: Header { red_dot: true, ..Header::default() },
        client_seq: 1,
        client_msg_no: "4277ad41a225bcf486b0f9e46a3b00a33".into(),
        channel_id: "u2".into(),
        channel_type: 1,
        msg_key: "c8c1f2444f2e9d3c9276ddf0da5c3e81".into(),
        payload: b"f9txkwX6CDIGMhDb3d1H1M/0fBOnQtPN3OzD8GyRsjQ=".to_vec(),
        ..SendPacket::default()
    });
    assert_vector(&p, 2, &bytes);
}

#[test]
fn jssdk_104_sendack_recv_recvack_v2() {
    let sendack = Packet::Sendack(SendackPacket {
        message_id: 1_800_000_000_000_000_000,
        client_seq: 1,
        message_seq: 1,
        reason_code: ReasonCode::SUCCESS,
        ..SendackPacket::default()
    });
    assert_vector(&sendack, 2, &unhex("40 11 | 18 fa e2 76 93 b4 00 00 | 00 00 00 01 | 00 00 00 01 | 01"));

    let recv_bytes = Bytes::default()
        .hex("52 8b 01 00")
        .str("ea0115e1ef8d7cbd86cfa858157343f6")
        .str("u1")
        .str("u1")
        .hex("01")
        .str("4277ad41a225bcf486b0f9e46a3b00a33")
        .hex("18 fa e2 76 93 b4 00 00  00 00 00 01  6b 03 c7 4d")
        .raw("ZoYWASus12jFYX+GIgRgM0wFdeAVTA2htaaWKJG61gg=")
        .0;
    let recv = Packet::Recv(RecvPacket {
        header: Header { red_dot: true, ..Header::default() },
        msg_key: "ea0115e1ef8d7cbd86cfa858157343f6".into(),
        from_uid: "u1".into(),
        channel_id: "u1".into(),
        channel_type: 1,
        client_msg_no: "4277ad41a225bcf486b0f9e46a3b00a33".into(),
        message_id: 1_800_000_000_000_000_000,
        message_seq: 1,
        timestamp: 0x6b03_c74d,
        payload: b"ZoYWASus12jFYX+GIgRgM0wFdeAVTA2htaaWKJG61gg=".to_vec(),
        ..RecvPacket::default()
    });
    assert_vector(&recv, 2, &recv_bytes);

    let recvack =
        Packet::Recvack(RecvackPacket { header: Header { red_dot: true, ..Header::default() }, message_id: 1_800_000_000_000_000_000, message_seq: 1 });
    assert_vector(&recvack, 2, &unhex("62 0c | 18 fa e2 76 93 b4 00 00 | 00 00 00 01"));
}

#[test]
fn jssdk_104_sub_layout() {
    let bytes = Bytes::default().hex("a0 13 00").str("n1").str("data1").hex("07 00").str("a=b").0;
    let p = Packet::Sub(SubPacket { setting: Setting(0), sub_no: "n1".into(), channel_id: "data1".into(), channel_type: 7, action: 0, param: "a=b".into() });
    assert_vector(&p, 2, &bytes);
}

// ---- version gates ----

#[test]
fn version_gates_of_connack() {
    let p = ConnackPacket { server_version: Some(4), reason_code: ReasonCode::SUCCESS, node_id: 7, ..ConnackPacket::default() };
    // v3: no node_id; v4: node_id.
    assert_eq!(enc(&Packet::Connack(p.clone()), 3).len(), 2 + 1 + 8 + 1 + 2 + 2);
    assert_eq!(enc(&Packet::Connack(p.clone()), 4).len(), 2 + 1 + 8 + 1 + 2 + 2 + 8);
    assert_eq!(enc(&Packet::Connack(p), 4)[0], 0x21);
    assert!(announces_server_version(4) && announces_server_version(5) && !announces_server_version(3));
    assert_eq!((negotiate_version(0), negotiate_version(5), negotiate_version(6), negotiate_version(9)), (1, 5, 6, 6));
}

#[test]
fn stream_fields_only_for_versions_2_to_4_with_the_stream_bit() {
    let send = SendPacket { setting: Setting(Setting::STREAM), stream_no: "s1".into(), ..SendPacket::default() };
    let base = |v: u8| 1 + 4 + 2 + 2 + 1 + if v >= 3 { 4 } else { 0 } + 2;
    for v in 1..=6 {
        let body_len = enc(&Packet::Send(send.clone()), v).len() - 2;
        let stream = if (2..=4).contains(&v) { 4 } else { 0 };
        assert_eq!(body_len, base(v) + stream, "SEND v{v}");
    }
    // Without the bit there is no stream field at any version.
    let plain = SendPacket { stream_no: "s1".into(), ..SendPacket::default() };
    for v in 1..=6 {
        assert_eq!(enc(&Packet::Send(plain.clone()), v).len() - 2, base(v));
    }
    // RECV's stream block: stream_no, stream_seq u32, stream_flag u8 (GoProto and SDK 1.0.4 order).
    let recv = RecvPacket { setting: Setting(Setting::STREAM), stream_no: "s".into(), stream_seq: 0x0102_0304, stream_flag: 2, ..RecvPacket::default() };
    let bytes = enc(&Packet::Recv(recv), 2);
    let block = unhex("0001 73 01020304 02");
    assert_eq!(&bytes[2 + 1 + 2 + 2 + 2 + 1 + 2..][..block.len()], block.as_slice());
}

#[test]
fn topic_field_follows_the_topic_bit() {
    let send = SendPacket { setting: Setting(Setting::TOPIC), topic: "t".into(), payload: b"p".to_vec(), ..SendPacket::default() };
    let bytes = enc(&Packet::Send(send), 5);
    assert_eq!(&bytes[bytes.len() - 4..], &unhex("0001 74 70")[..]);
}

#[test]
fn sendack_trailing_client_msg_no_only_from_v6() {
    let p = Packet::Sendack(SendackPacket { client_msg_no: "m".into(), ..SendackPacket::default() });
    assert_eq!(enc(&p, 5).len(), 2 + 8 + 4 + 4 + 1);
    assert_eq!(enc(&p, 6).len(), 2 + 8 + 4 + 8 + 1 + 3);
    // Below v6 a trailing client_msg_no (as WuKongIM v3 may append) is ignored, not an error.
    let mut v5 = enc(&p, 5);
    v5[1] += 3;
    v5.extend_from_slice(&unhex("0001 6d"));
    let (decoded, n) = decode(&v5, 5).unwrap();
    assert_eq!((decoded, n), (Packet::Sendack(SendackPacket::default()), v5.len()));
}

#[test]
fn setting_and_header_helpers() {
    let s = Setting::default().with(Setting::RECEIPT, true).with(Setting::TOPIC, true).with(Setting::STREAM, true);
    assert_eq!(s.0, 0x8a);
    assert!(s.receipt() && s.topic() && s.stream() && !s.no_encrypt());
    assert_eq!(s.with(Setting::TOPIC, false).0, 0x82);
    for flags in 0..16 {
        assert_eq!(Header::from_flags(flags).flags(), flags);
    }
    assert_eq!(Header { dup: true, ..Header::default() }.flags(), 0x08);
    assert_eq!(ReasonCode::CONNECT_KICK.to_string(), "12 (ConnectKick)");
    assert_eq!(ReasonCode(200).to_string(), "200");
}

#[test]
fn remaining_length_varint_examples() {
    let cases: [(usize, &[u8]); 6] =
        [(0, &[0x00]), (127, &[0x7f]), (128, &[0x80, 0x01]), (321, &[0xc1, 0x02]), (16384, &[0x80, 0x80, 0x01]), (MAX_BODY_LEN, &[0x80, 0x80, 0x40])];
    for (len, bytes) in cases {
        let (v, n) = varint(len);
        assert_eq!(&v[..n], bytes, "varint({len})");
    }
}

// ---- invalid and incomplete input ----

#[test]
fn empty_and_partial_headers_are_incomplete() {
    assert_eq!(decode(&[], 5), Err(DecodeError::Incomplete));
    assert_eq!(decode(&[0x30], 5), Err(DecodeError::Incomplete));
    assert_eq!(decode(&[0x30, 0x80], 5), Err(DecodeError::Incomplete));
    assert_eq!(decode(&[0x30, 0x80, 0x80, 0x80], 5), Err(DecodeError::Incomplete));
    assert_eq!(decode_connect(&[0x10, 0x05, 0x05]), Err(DecodeError::Incomplete));
}

#[test]
fn unknown_packet_types_are_invalid() {
    for code in [0u8, 13, 14, 15] {
        assert!(invalid_reason(decode(&[code << 4, 0x00], 5)).contains("unknown packet type"));
        assert!(matches!(check(&[code << 4]), Err(DecodeError::Invalid(_))));
    }
}

#[test]
fn oversized_length_is_invalid_before_the_body_arrives() {
    // 1 MiB + 1 = 0x100001 → varint 81 80 40.
    assert!(invalid_reason(decode(&[0x30, 0x81, 0x80, 0x40], 5)).contains("exceeds"));
    // The largest 4-byte length.
    assert!(invalid_reason(decode(&[0x50, 0xff, 0xff, 0xff, 0x7f], 5)).contains("exceeds"));
    // Exactly 1 MiB is allowed: an EVENT whose data fills the body.
    let event = Packet::Event(EventPacket { data: vec![b'x'; MAX_BODY_LEN - 12], ..EventPacket::default() });
    let bytes = enc(&event, 5);
    assert_eq!(&bytes[..4], &[0xc0, 0x80, 0x80, 0x40]);
    assert_eq!(decode(&bytes, 5), Ok((event, bytes.len())));
    assert_eq!(decode(&bytes[..bytes.len() - 1], 5), Err(DecodeError::Incomplete));
}

#[test]
fn varint_longer_than_four_bytes_is_invalid() {
    assert!(invalid_reason(decode(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], 5)).contains("longer than 4 bytes"));
    assert!(invalid_reason(decode(&[0x30, 0x80, 0x80, 0x80, 0x80], 5)).contains("longer than 4 bytes"));
}

#[test]
fn truncated_fields_inside_a_complete_frame_are_invalid() {
    // DISCONNECT whose reason string claims 5 bytes but the body holds 2.
    assert!(invalid_reason(decode(&unhex("90 05 0c 00 05 61 62"), 5)).contains("truncated field reason"));
    // An empty body where fields are required.
    assert!(invalid_reason(decode(&[0x30, 0x00], 5)).contains("truncated"));
    assert!(invalid_reason(decode(&[0x60, 0x00], 5)).contains("truncated"));
    // RECVACK with a v5 (u32) seq decoded as a v6 session needs 4 more bytes.
    let v5 = enc(&Packet::Recvack(RecvackPacket::default()), 5);
    assert!(invalid_reason(decode(&v5, 6)).contains("message_seq"));
    // A SEND cut inside msg_key, with the frame length adjusted so the frame is complete.
    let send = enc(&Packet::Send(SendPacket { msg_key: "k".repeat(32), ..SendPacket::default() }), 5);
    let mut cut = send[..send.len() - 10].to_vec();
    cut[1] -= 10;
    assert!(invalid_reason(decode(&cut, 5)).contains("msg_key"));
}

#[test]
fn strings_over_32767_bytes_or_not_utf8_are_invalid() {
    let mut bytes = vec![0x90, 0x83, 0x80, 0x02, 0x0c, 0x80, 0x00];
    bytes.resize(4 + 3 + 0x8000, b'a');
    assert!(invalid_reason(decode(&bytes, 5)).contains("more than 32767"));
    assert!(invalid_reason(decode(&unhex("90 04 0c 00 01 ff"), 5)).contains("not UTF-8"));
}

#[test]
fn decode_connect_refuses_other_first_packets() {
    assert!(invalid_reason(decode_connect(&[0x70]).map(|(c, n)| (Packet::Connect(c), n))).contains("must be CONNECT"));
    let send = enc(&Packet::Send(SendPacket::default()), 5);
    assert!(matches!(decode_connect(&send), Err(DecodeError::Invalid(_))));
}

#[test]
fn encode_refuses_what_peers_would_reject_and_leaves_output_unchanged() {
    let mut out = vec![1, 2, 3];
    let long = Packet::Disconnect(DisconnectPacket { reason: "x".repeat(MAX_STRING_LEN + 1), ..DisconnectPacket::default() });
    assert_eq!(encode(&long, 5, &mut out), Err(EncodeError::StringTooLong { field: "reason", len: MAX_STRING_LEN + 1 }));
    let fits = Packet::Disconnect(DisconnectPacket { reason: "x".repeat(MAX_STRING_LEN), ..DisconnectPacket::default() });
    assert!(encode_to_vec(&fits, 5).is_ok());

    let big_seq = Packet::Recv(RecvPacket { message_seq: u64::from(u32::MAX) + 1, ..RecvPacket::default() });
    assert_eq!(encode(&big_seq, 5, &mut out), Err(EncodeError::SeqOutOfRange(u64::from(u32::MAX) + 1)));
    assert!(encode_to_vec(&big_seq, 6).is_ok());

    let huge = Packet::Event(EventPacket { data: vec![0; MAX_BODY_LEN], ..EventPacket::default() });
    assert_eq!(encode(&huge, 5, &mut out), Err(EncodeError::BodyTooLarge(MAX_BODY_LEN + 12)));
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn back_to_back_packets_decode_one_at_a_time() {
    let a = Packet::Sendack(SendackPacket { client_seq: 9, ..SendackPacket::default() });
    let mut buf = enc(&a, 5);
    buf.push(0x80);
    buf.extend(enc(&Packet::Disconnect(DisconnectPacket::default()), 5));
    let (p1, n1) = decode(&buf, 5).unwrap();
    let (p2, n2) = decode(&buf[n1..], 5).unwrap();
    let (p3, n3) = decode(&buf[n1 + n2..], 5).unwrap();
    assert_eq!((p1, p2, p3), (a, Packet::Pong, Packet::Disconnect(DisconnectPacket::default())));
    assert_eq!(n1 + n2 + n3, buf.len());
}

// ---- properties ----

/// What survives a round trip at `version`: fields the version does not carry come back as their
/// defaults, and header flags of types that carry none come back cleared.
fn project(p: &Packet, v: u8) -> Packet {
    let stream = |s: Setting| s.stream() && (2..=4).contains(&v);
    match p.clone() {
        Packet::Connack(mut c) => {
            if v < 4 {
                c.node_id = 0;
            }
            Packet::Connack(c)
        }
        Packet::Send(mut s) => {
            if !stream(s.setting) {
                s.stream_no.clear();
            }
            if v < 3 {
                s.expire = 0;
            }
            if !s.setting.topic() {
                s.topic.clear();
            }
            Packet::Send(s)
        }
        Packet::Sendack(mut a) => {
            if v < 6 {
                a.client_msg_no.clear();
            }
            Packet::Sendack(a)
        }
        Packet::Recv(mut r) => {
            if !stream(r.setting) {
                r.stream_no.clear();
                r.stream_seq = 0;
                r.stream_flag = 0;
            }
            if v < 3 {
                r.expire = 0;
            }
            if !r.setting.topic() {
                r.topic.clear();
            }
            Packet::Recv(r)
        }
        other => other,
    }
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![4 => "\\PC{0,12}", 1 => "[a-z0-9]{0,300}"]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn header() -> impl Strategy<Value = Header> {
    (0u8..16).prop_map(Header::from_flags)
}

fn seq() -> impl Strategy<Value = u64> {
    // Sequences above u32::MAX only exist for version 6; the property tests narrow them per version.
    prop_oneof![any::<u32>().prop_map(u64::from), any::<u64>()]
}

fn connect() -> impl Strategy<Value = Packet> {
    (any::<u8>(), any::<u8>(), string(), string(), string(), any::<i64>(), string()).prop_map(
        |(version, device_flag, device_id, uid, token, client_timestamp, client_key)| {
            Packet::Connect(ConnectPacket { version, device_flag, device_id, uid, token, client_timestamp, client_key })
        },
    )
}

fn connack() -> impl Strategy<Value = Packet> {
    (any::<Option<u8>>(), any::<i64>(), any::<u8>(), string(), string(), any::<u64>()).prop_map(
        |(server_version, time_diff, reason, server_key, salt, node_id)| {
            Packet::Connack(ConnackPacket { server_version, time_diff, reason_code: ReasonCode(reason), server_key, salt, node_id })
        },
    )
}

fn send() -> impl Strategy<Value = Packet> {
    (header(), any::<u8>(), any::<u32>(), string(), string(), string(), any::<u8>(), any::<u32>(), string(), string(), bytes()).prop_map(
        |(header, setting, client_seq, client_msg_no, stream_no, channel_id, channel_type, expire, msg_key, topic, payload)| {
            Packet::Send(SendPacket {
                header,
                setting: Setting(setting),
                client_seq,
                client_msg_no,
                stream_no,
                channel_id,
                channel_type,
                expire,
                msg_key,
                topic,
                payload,
            })
        },
    )
}

fn sendack() -> impl Strategy<Value = Packet> {
    (header(), any::<i64>(), any::<u32>(), seq(), any::<u8>(), string()).prop_map(|(header, message_id, client_seq, message_seq, reason, client_msg_no)| {
        Packet::Sendack(SendackPacket { header, message_id, client_seq, message_seq, reason_code: ReasonCode(reason), client_msg_no })
    })
}

fn recv() -> impl Strategy<Value = Packet> {
    (
        (header(), any::<u8>(), string(), string(), string(), any::<u8>(), any::<u32>(), string()),
        (string(), any::<u32>(), any::<u8>(), any::<i64>(), seq(), any::<i32>(), string(), bytes()),
    )
        .prop_map(
            |(
                (header, setting, msg_key, from_uid, channel_id, channel_type, expire, client_msg_no),
                (stream_no, stream_seq, stream_flag, message_id, message_seq, timestamp, topic, payload),
            )| {
                Packet::Recv(RecvPacket {
                    header,
                    setting: Setting(setting),
                    msg_key,
                    from_uid,
                    channel_id,
                    channel_type,
                    expire,
                    client_msg_no,
                    stream_no,
                    stream_seq,
                    stream_flag,
                    message_id,
                    message_seq,
                    timestamp,
                    topic,
                    payload,
                })
            },
        )
}

fn recvack() -> impl Strategy<Value = Packet> {
    (header(), any::<i64>(), seq()).prop_map(|(header, message_id, message_seq)| Packet::Recvack(RecvackPacket { header, message_id, message_seq }))
}

fn disconnect() -> impl Strategy<Value = Packet> {
    (any::<u8>(), string()).prop_map(|(reason, text)| Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode(reason), reason: text }))
}

fn sub() -> impl Strategy<Value = Packet> {
    (any::<u8>(), string(), string(), any::<u8>(), any::<u8>(), string()).prop_map(|(setting, sub_no, channel_id, channel_type, action, param)| {
        Packet::Sub(SubPacket { setting: Setting(setting), sub_no, channel_id, channel_type, action, param })
    })
}

fn suback() -> impl Strategy<Value = Packet> {
    (string(), string(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(sub_no, channel_id, channel_type, action, reason)| {
        Packet::Suback(SubackPacket { sub_no, channel_id, channel_type, action, reason_code: ReasonCode(reason) })
    })
}

fn event() -> impl Strategy<Value = Packet> {
    (string(), string(), any::<i64>(), bytes()).prop_map(|(id, kind, timestamp, data)| Packet::Event(EventPacket { id, kind, timestamp, data }))
}

fn any_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![connect(), connack(), send(), sendack(), recv(), recvack(), Just(Packet::Ping), Just(Packet::Pong), disconnect(), sub(), suback(), event()]
}

/// Narrows u64 sequences to u32 for versions that carry 4-byte sequences.
fn fit_version(mut p: Packet, v: u8) -> Packet {
    if v < 6 {
        let narrow = |s: &mut u64| *s &= u64::from(u32::MAX);
        match &mut p {
            Packet::Sendack(a) => narrow(&mut a.message_seq),
            Packet::Recv(r) => narrow(&mut r.message_seq),
            Packet::Recvack(a) => narrow(&mut a.message_seq),
            _ => {}
        }
    }
    p
}

/// The round-trip property for one packet at every version 1-6: encode → decode gives the
/// version's projection and consumes every byte; every strict prefix is `Incomplete`; `check` agrees.
fn round_trip(p: &Packet) -> Result<(), TestCaseError> {
    for v in MIN_VERSION..=LATEST_VERSION {
        let p = fit_version(p.clone(), v);
        let bytes = encode_to_vec(&p, v).map_err(|e| TestCaseError::fail(format!("encode v{v}: {e}")))?;
        prop_assert_eq!(decode(&bytes, v), Ok((project(&p, v), bytes.len())), "v{}", v);
        prop_assert_eq!(check(&bytes), Ok(bytes.len()));
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..cut], v), Err(DecodeError::Incomplete), "v{} prefix {}", v, cut);
        }
        // Trailing bytes belong to the next packet.
        let mut more = bytes.clone();
        more.extend_from_slice(&[0x70, 0x30]);
        prop_assert_eq!(decode(&more, v).map(|(_, n)| n), Ok(bytes.len()));
    }
    Ok(())
}

proptest! {
    #[test]
    fn round_trip_connect(p in connect()) { round_trip(&p)?; }

    #[test]
    fn round_trip_connack(p in connack()) { round_trip(&p)?; }

    #[test]
    fn round_trip_send(p in send()) { round_trip(&p)?; }

    #[test]
    fn round_trip_sendack(p in sendack()) { round_trip(&p)?; }

    #[test]
    fn round_trip_recv(p in recv()) { round_trip(&p)?; }

    #[test]
    fn round_trip_recvack(p in recvack()) { round_trip(&p)?; }

    #[test]
    fn round_trip_ping_pong(p in prop_oneof![Just(Packet::Ping), Just(Packet::Pong)]) { round_trip(&p)?; }

    #[test]
    fn round_trip_disconnect(p in disconnect()) { round_trip(&p)?; }

    #[test]
    fn round_trip_sub(p in sub()) { round_trip(&p)?; }

    #[test]
    fn round_trip_suback(p in suback()) { round_trip(&p)?; }

    #[test]
    fn round_trip_event(p in event()) { round_trip(&p)?; }
}

/// The fuzz property shared by the arbitrary-bytes and mutated-packet tests: decoding never panics,
/// never claims more bytes than it was given, and whatever it accepts re-encodes to bytes that decode
/// to the same packet (so a decoded packet can always be answered or forwarded).
fn decode_is_total(data: &[u8]) -> Result<(), TestCaseError> {
    for v in 0..=7u8 {
        match decode(data, v) {
            Ok((p, n)) => {
                prop_assert!(n >= 1 && n <= data.len());
                prop_assert_eq!(check(data), Ok(n));
                let again = encode_to_vec(&p, v).map_err(|e| TestCaseError::fail(format!("re-encode v{v}: {e}")))?;
                prop_assert_eq!(decode(&again, v), Ok((p, again.len())));
            }
            Err(DecodeError::Incomplete) => prop_assert_eq!(check(data), Err(DecodeError::Incomplete)),
            Err(DecodeError::Invalid(_)) => {}
        }
        let _ = decode_connect(data);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Deterministic fuzzing on arbitrary byte strings (the cargo-fuzz target in `fuzz/` runs the
    /// same check coverage-guided).
    #[test]
    fn fuzz_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_is_total(&data)?;
    }

    /// Fuzzing near valid input: valid encodings with bytes overwritten, cut or inserted, which reach
    /// far deeper into the field decoders than random bytes do.
    #[test]
    fn fuzz_mutated_packets(
        p in any_packet(),
        v in 1u8..=6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut data = encode_to_vec(&fit_version(p, v), v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (at, byte, op) in edits {
            let i = at.index(data.len() + 1);
            match op {
                0 if i < data.len() => data[i] = byte,
                1 => data.insert(i, byte),
                _ => data.truncate(i),
            }
        }
        decode_is_total(&data)?;
    }
}
