//! Crypto tests: the verified vectors of spec §2.9, a full v5 handshake and message exchange against
//! the spec's packet bytes, failure cases and round-trip properties.

use proptest::prelude::*;

use super::*;
use crate::gateway::packet::{decode, encode_to_vec, Header, Packet};

fn fixed() -> SessionCipher {
    SessionCipher::new(*b"1234567890abcdef", *b"abcdef1234567890")
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- §2.9.1: fixed key `1234567890abcdef`, IV `abcdef1234567890` ----

#[test]
fn fixed_key_payload_encryption() {
    let c = fixed();
    assert_eq!(c.encrypt_payload(b"hello"), b"lHmhQSLj/3y7tkoSCBhwmw==");
    assert_eq!(c.decrypt_payload(b"lHmhQSLj/3y7tkoSCBhwmw==").unwrap(), b"hello");
}

#[test]
fn fixed_key_send_msg_key() {
    let c = fixed();
    let send = SendPacket {
        client_seq: 7,
        client_msg_no: "m1".into(),
        channel_id: "u2".into(),
        channel_type: 1,
        payload: b"ciphertext".to_vec(),
        ..SendPacket::default()
    };
    assert_eq!(send_sign_string(&send), b"7m1u21ciphertext");
    assert_eq!(c.encrypt_payload(b"7m1u21ciphertext"), b"csHLXjsJ2lVXugsnjhRy5ZNNciStb13cqsg/2EMcuh4=");
    assert_eq!(c.send_msg_key(&send), "4045dd94e0f22fbb3cce7ffa150e38b5");
}

#[test]
fn fixed_key_recv_seal() {
    let c = fixed();
    let mut recv = RecvPacket {
        message_id: 99,
        message_seq: 8,
        client_msg_no: "m1".into(),
        timestamp: 123,
        from_uid: "u1".into(),
        channel_id: "u2".into(),
        channel_type: 1,
        ..RecvPacket::default()
    };
    c.seal_recv(&mut recv, b"hello");
    assert_eq!(recv.payload, b"lHmhQSLj/3y7tkoSCBhwmw==");
    assert_eq!(recv_sign_string(&recv), b"998m1123u1u21lHmhQSLj/3y7tkoSCBhwmw==");
    assert_eq!(recv.msg_key, "e7f97fc2ba14d308688a00cf8cc96817");
    assert_eq!(c.open_recv(&recv).unwrap(), b"hello");
}

// ---- §2.9.2: full handshake, protocol v5 ----

const CLIENT_SEED: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const SERVER_SECRET: &[u8; 32] = b"fedcba9876543210fedcba9876543210";
const SALT: &str = "k3PzQ9xR7mW2tY5v";
const CLIENT_KEY: &str = "hlF7wMOf6Ha3ZGy1407gPa9xzLrWdFDBapcK2MvAPn4=";
const PLAINTEXT: &[u8] = br#"{"type":1,"content":"hello"}"#;
const WIRE_PAYLOAD: &[u8] = b"kzEycNQcknkET5ZSkEl95SEluj98GRyDazvMg/66eO8=";

#[test]
fn handshake_key_derivation() {
    // The client side, as curve25519-js does it: the seed clamped into an X25519 scalar.
    let client = ServerKeyPair::from_secret_bytes(*CLIENT_SEED);
    assert_eq!(hexs(&client.public_key()), "86517bc0c39fe876b7646cb5e34ee03daf71ccbad67450c16a970ad8cbc03e7e");
    assert_eq!(client.public_key_base64(), CLIENT_KEY);

    let server = ServerKeyPair::from_secret_bytes(*SERVER_SECRET);
    assert_eq!(hexs(&server.public_key()), "dbfca07744d1aa20b5b1e6ebe9568ccf15309ea27d666a3df07c09a680938512");
    assert_eq!(server.public_key_base64(), "2/ygd0TRqiC1sebr6VaMzxUwnqJ9Zmo98HwJpoCThRI=");

    let shared = server.shared_secret(CLIENT_KEY).unwrap();
    assert_eq!(hexs(&shared), "dfd3aa8a3164bcfe2fde3bc45d792c442bd95c080b28974fc59f8d70a676c107");
    assert_eq!(client.shared_secret(&server.public_key_base64()).unwrap(), shared);
    assert_eq!(STANDARD.encode(shared), "39OqijFkvP4v3jvEXXksRCvZXAgLKJdPxZ+NcKZ2wQc=");
    assert_eq!(md5_hex(b"39OqijFkvP4v3jvEXXksRCvZXAgLKJdPxZ+NcKZ2wQc="), "d3514bfacef9c97acccde48fe43090aa");
    assert_eq!(&derive_aes_key(&shared), b"d3514bfacef9c97a");

    let cipher = server.agree(CLIENT_KEY, SALT).unwrap();
    assert_eq!((cipher.key(), cipher.iv()), (b"d3514bfacef9c97a", b"k3PzQ9xR7mW2tY5v"));
    assert_eq!(cipher.encrypt_payload(PLAINTEXT), WIRE_PAYLOAD);
}

#[test]
fn handshake_send_is_verified_and_decrypted() {
    let cipher = ServerKeyPair::from_secret_bytes(*SERVER_SECRET).agree(CLIENT_KEY, SALT).unwrap();
    // The SEND exactly as the JS SDK encodes it (spec §2.9.2).
    let bytes = unhex("3282010000000001002461316232633364346535663630373138323933613462356336643765386639305f305f33000275320100000000002066633262393130366562626164386462386436386234386139313564346134376b7a4579634e51636b6e6b4554355a536b456c393553456c756a393847527944617a764d672f3636654f383d");
    let (Packet::Send(send), _) = decode(&bytes, 5).unwrap() else { panic!("not a SEND") };
    assert_eq!(send_sign_string(&send), b"1a1b2c3d4e5f60718293a4b5c6d7e8f90_0_3u21kzEycNQcknkET5ZSkEl95SEluj98GRyDazvMg/66eO8=");
    assert_eq!(cipher.send_msg_key(&send), "fc2b9106ebbad8db8d68b48a915d4a47");
    assert_eq!(cipher.open_send(&send).unwrap(), PLAINTEXT);
}

#[test]
fn handshake_recv_is_byte_identical_with_the_spec() {
    let cipher = ServerKeyPair::from_secret_bytes(*SERVER_SECRET).agree(CLIENT_KEY, SALT).unwrap();
    let mut recv = RecvPacket {
        header: Header { red_dot: true, ..Header::default() },
        from_uid: "u1".into(),
        channel_id: "u1".into(),
        channel_type: 1,
        client_msg_no: "a1b2c3d4e5f60718293a4b5c6d7e8f90_0_3".into(),
        message_id: 1_810_000_000_000_000_001,
        message_seq: 1,
        timestamp: 1_700_000_001,
        ..RecvPacket::default()
    };
    cipher.seal_recv(&mut recv, PLAINTEXT);
    assert_eq!(recv_sign_string(&recv), b"18100000000000000011a1b2c3d4e5f60718293a4b5c6d7e8f90_0_31700000001u1u11kzEycNQcknkET5ZSkEl95SEluj98GRyDazvMg/66eO8=");
    assert_eq!(recv.msg_key, "3f004d8af26bee250fc4d768592f6e4b");
    assert_eq!(
        hexs(&encode_to_vec(&Packet::Recv(recv), 5).unwrap()),
        "529201000020336630303464386166323662656532353066633464373638353932663665346200027531000275310100000000002461316232633364346535663630373138323933613462356336643765386639305f305f33191e696903750001000000016553f1016b7a4579634e51636b6e6b4554355a536b456c393553456c756a393847527944617a764d672f3636654f383d"
    );
}

// ---- handshake with fresh randomness ----

#[test]
fn random_handshake_agrees_with_the_client() {
    let client = ServerKeyPair::generate().unwrap();
    let hs = server_handshake(&client.public_key_base64()).unwrap();
    assert_eq!(hs.server_key.len(), 44);
    let client_cipher = client.agree(&hs.server_key, &hs.salt).unwrap();
    assert_eq!(client_cipher, hs.cipher);
    // The key is 16 lowercase hex characters, as the SDK derives it.
    assert!(hs.cipher.key().iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn salts_are_sixteen_alphanumerics_and_differ() {
    let a = random_salt().unwrap();
    let b = random_salt().unwrap();
    assert_eq!(a.len(), SALT_LEN);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, b);
}

// ---- failures ----

#[test]
fn bad_client_keys_are_refused_with_their_reason_codes() {
    let server = ServerKeyPair::from_secret_bytes(*SERVER_SECRET);
    assert_eq!(server.agree("", SALT), Err(CryptoError::EmptyClientKey));
    assert_eq!(CryptoError::EmptyClientKey.reason_code(), ReasonCode::CLIENT_KEY_IS_EMPTY);
    for bad in ["not base64!", "AAAA", "hlF7wMOf6Ha3ZGy1407gPa9xzLrWdFDBapcK2MvAPn4", &STANDARD.encode([1u8; 33])] {
        let err = server.agree(bad, SALT).unwrap_err();
        assert!(matches!(err, CryptoError::BadClientKey(_)), "{bad}: {err:?}");
        assert_eq!(err.reason_code(), ReasonCode::AUTH_FAIL);
    }
    // The all-zero point is of low order: the shared secret would be all zeros.
    assert!(matches!(server.agree(&STANDARD.encode([0u8; 32]), SALT), Err(CryptoError::BadClientKey(_))));
    assert_eq!(server.agree(CLIENT_KEY, "short"), Err(CryptoError::BadSalt(5)));
}

#[test]
fn tampered_sends_are_refused_with_reason_9() {
    let c = fixed();
    let mut send = SendPacket { client_seq: 1, client_msg_no: "m".into(), channel_id: "g1".into(), channel_type: 2, ..SendPacket::default() };
    send.payload = c.encrypt_payload(b"{\"type\":1}");
    send.msg_key = c.send_msg_key(&send);
    assert_eq!(c.open_send(&send).unwrap(), b"{\"type\":1}");

    let mut other_channel = send.clone();
    other_channel.channel_id = "g2".into();
    assert_eq!(c.open_send(&other_channel), Err(CryptoError::MsgKeyMismatch));
    assert_eq!(CryptoError::MsgKeyMismatch.reason_code(), ReasonCode::PAYLOAD_DECODE_ERROR);

    // A correct msg_key over a payload that is not ciphertext.
    for payload in [&b"not base64 at all"[..], b"aGVsbG8=", b""] {
        let mut s = send.clone();
        s.payload = payload.to_vec();
        s.msg_key = c.send_msg_key(&s);
        let err = c.open_send(&s).unwrap_err();
        assert!(matches!(err, CryptoError::BadPayload(_)), "{err:?}");
        assert_eq!(err.reason_code(), ReasonCode::PAYLOAD_DECODE_ERROR);
    }
    // Another session's key does not decrypt.
    let wrong = SessionCipher::new(*b"0000000000000000", *b"abcdef1234567890");
    assert!(wrong.open_send(&send).is_err());
}

#[test]
fn pkcs7_adds_a_full_block_to_block_sized_input() {
    let c = fixed();
    let wire = c.encrypt_payload(&[b'a'; 16]);
    assert_eq!(STANDARD.decode(&wire).unwrap().len(), 32);
    assert_eq!(c.encrypt_payload(b"").len(), 24);
}

#[test]
fn debug_output_hides_secrets() {
    let c = fixed();
    assert!(!format!("{c:?}").contains("1234567890abcdef"));
    let pair = ServerKeyPair::from_secret_bytes(*SERVER_SECRET);
    assert!(format!("{pair:?}").contains("2/ygd0TRqiC1sebr6VaMzxUwnqJ9Zmo98HwJpoCThRI="));
}

proptest! {
    #[test]
    fn payloads_round_trip(key in any::<[u8; 16]>(), iv in any::<[u8; 16]>(), plain in prop::collection::vec(any::<u8>(), 0..200)) {
        let c = SessionCipher::new(key, iv);
        let wire = c.encrypt_payload(&plain);
        prop_assert!(wire.iter().all(u8::is_ascii));
        prop_assert_eq!(c.decrypt_payload(&wire), Ok(plain));
    }

    #[test]
    fn sealed_recvs_open(plain in "\\PC{0,50}", message_id in any::<i64>(), message_seq in any::<u64>(), timestamp in any::<i32>(), from in "[a-z0-9]{0,8}") {
        let c = fixed();
        let mut recv = RecvPacket { message_id, message_seq, timestamp, from_uid: from, channel_id: "c".into(), channel_type: 2, ..RecvPacket::default() };
        c.seal_recv(&mut recv, plain.as_bytes());
        prop_assert_eq!(recv.msg_key.len(), 32);
        prop_assert_eq!(c.open_recv(&recv), Ok(plain.into_bytes()));
    }

    #[test]
    fn decrypt_never_panics(wire in prop::collection::vec(any::<u8>(), 0..100)) {
        let _ = fixed().decrypt_payload(&wire);
    }
}

/// The payload limit the gateway gives the send use case: a RECV of that plaintext, sealed, with every
/// other field at the longest the use cases allow, still encodes within one packet; a few bytes more
/// would not fit with the margin gone.
#[test]
fn the_largest_deliverable_payload_fits_one_recv_with_the_longest_fields() {
    use crate::gateway::packet::{RecvPacket, MAX_BODY_LEN};
    let max = crate::gateway::max_deliverable_payload();
    assert!(max > 700_000 && max < MAX_BODY_LEN, "{max}");
    let mut recv = RecvPacket {
        from_uid: "u".repeat(257),
        channel_id: "c".repeat(257),
        channel_type: 2,
        client_msg_no: "n".repeat(128),
        stream_no: "s".repeat(128),
        topic: "t".repeat(255),
        message_id: i64::MAX,
        message_seq: u64::MAX,
        ..RecvPacket::default()
    };
    fixed().seal_recv(&mut recv, &vec![7u8; max]);
    let encoded = encode_to_vec(&Packet::Recv(recv), 6).expect("the largest deliverable RECV encodes");
    assert!(encoded.len() <= MAX_BODY_LEN + 5, "{} bytes", encoded.len());
}
