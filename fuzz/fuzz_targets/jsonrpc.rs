//! Fuzzes the JSON-RPC decoder (WKProto over JSON, spec §12) with arbitrary bytes, fed whole and in
//! chunks.
//!
//! Beyond "never panics", it checks what the incremental scanner promises: how the input is cut into
//! WebSocket messages does not change the packets that come out, in order, so a client cannot make
//! the decoder read an object differently by splitting it. (A bare scalar ends with the message that
//! carried it, by design, so refusals of scalars and a fatal error may differ with the cuts; the
//! packets are compared when neither run met a fatal error.)

#![no_main]

use libfuzzer_sys::fuzz_target;

// Compiled straight from the server's source files, as the decode target does: jsonrpc.rs depends on
// packet.rs (as `super::packet`, here the crate root's), base64, serde and serde_json only.
#[allow(dead_code)]
#[path = "../../src/gateway/packet.rs"]
mod packet;
#[allow(dead_code)]
#[path = "../../src/gateway/jsonrpc.rs"]
mod jsonrpc;

use jsonrpc::{Fatal, Incoming, JsonRpc};

/// Everything the decoder yields for `pieces`, draining after each piece; stops at a fatal error
/// (kept without its text).
fn outcomes<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Vec<Result<Incoming, Fatal>> {
    let mut rpc = JsonRpc::new();
    let mut out = Vec::new();
    for piece in pieces {
        rpc.feed(piece);
        loop {
            match rpc.next_message() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(Fatal(_)) => {
                    out.push(Err(Fatal(String::new())));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let whole = outcomes(std::iter::once(rest));
    let chunked = outcomes(rest.chunks(usize::from(chunk % 16) + 1));
    // Limits on buffered input are reached at different points only for inputs far beyond libFuzzer's
    // usual lengths; below 60 KB the two must agree exactly.
    let packets = |o: &[Result<Incoming, Fatal>]| o.iter().filter_map(|r| match r { Ok(Incoming::Packet(p)) => Some(p.clone()), _ => None }).collect::<Vec<_>>();
    let fatal = |o: &[Result<Incoming, Fatal>]| o.iter().any(Result::is_err);
    if rest.len() < 60_000 && !fatal(&whole) && !fatal(&chunked) {
        assert_eq!(packets(&whole), packets(&chunked), "cutting the input changed the packets decoded");
    }
});
