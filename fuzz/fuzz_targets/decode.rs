//! Fuzzes the WKProto decoder with arbitrary bytes at every protocol version.
//!
//! Beyond "never panics", it checks what the session layer relies on: the consumed length is within
//! the input and agrees with `check`, and any packet that decodes re-encodes to bytes that decode to
//! the same packet.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The codec is compiled straight from the server's source file rather than through the `rookery`
// crate: packet.rs depends only on std and thiserror, and this keeps RocksDB, actix and warp out of
// the sanitizer-instrumented build.
#[allow(dead_code)]
#[path = "../../src/gateway/packet.rs"]
mod packet;

use packet::{check, decode, decode_connect, encode_to_vec, DecodeError};

fuzz_target!(|data: &[u8]| {
    for version in 0..=7u8 {
        match decode(data, version) {
            Ok((p, n)) => {
                assert!(n >= 1 && n <= data.len(), "consumed {n} of {}", data.len());
                assert_eq!(check(data), Ok(n));
                let again = encode_to_vec(&p, version).expect("a decoded packet re-encodes");
                assert_eq!(decode(&again, version), Ok((p, again.len())));
            }
            Err(DecodeError::Incomplete) => assert_eq!(check(data), Err(DecodeError::Incomplete)),
            Err(DecodeError::Invalid(_)) => {}
        }
    }
    if let Ok((c, n)) = decode_connect(data) {
        assert!(n <= data.len());
        assert_eq!(decode(data, 5), Ok((packet::Packet::Connect(c), n)));
    }
});
