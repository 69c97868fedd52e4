//! One client connection as a stream of WKProto packets, whatever the socket kind (STYLE.md item 19,
//! after mini-redis's `Connection`).
//!
//! Input is a reassembly buffer: TCP reads and WebSocket binary messages both append to it, and
//! [`packet::check`] cuts whole packets off its front, so a WebSocket message holding several packets
//! or half of one works the same as a TCP stream. Output is buffered: [`Connection::queue`] encodes
//! with the session's negotiated version and [`Connection::flush`] writes everything queued at once.
//! On TCP that is one write for several packets (STACK.md §3d/3e); on WebSocket every packet is its own
//! binary message, because the JS SDK cannot split a message into packets on its own terms
//! (spec §3.1: servers write one packet per binary message).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::tls::Socket;
use bytes::BytesMut;
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::jsonrpc::{Incoming, JsonRpc};
use super::packet::{self, DecodeError, EncodeError, Packet};

/// Room a TCP read gets in the input buffer at least. Most packets are far smaller (a PING is one byte,
/// a typical SEND a few hundred); a larger one, or a burst, grows the buffer as it arrives. Idle sessions
/// are what a server holds most of, so their buffer is kept small: 4 KB each was 40% of an idle
/// connection's memory (docs/BENCHMARKS.md, S4).
const READ_ROOM: usize = 512;

use crate::presence::{BYTES_IN, BYTES_OUT};

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer sent bytes that can never become a valid packet, or a packet that is not allowed
    /// here. The session answers with DISCONNECT before closing.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The socket failed, or a packet could not be encoded.
    #[error("transport error: {0}")]
    Transport(String),
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Transport(e.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ConnError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ConnError::Transport(e.to_string())
    }
}

impl From<EncodeError> for ConnError {
    fn from(e: EncodeError) -> Self {
        ConnError::Transport(format!("encoding a packet: {e}"))
    }
}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> Self {
        match e {
            // Only whole packets reach the decoder, so a short body is invalid, never incomplete.
            DecodeError::Incomplete => ConnError::Protocol("truncated packet".into()),
            DecodeError::Invalid(m) => ConnError::Protocol(m),
        }
    }
}

/// The socket under a connection.
enum Transport {
    Tcp(Socket),
    Ws(Box<WebSocketStream<Socket>>),
}

/// A buffered packet reader and writer over TCP or WebSocket.
pub struct Connection {
    transport: Transport,
    input: BytesMut,
    /// TCP: the bytes of every queued packet, back to back.
    output: Vec<u8>,
    /// TCP: how much of `output` is already written (so a cancelled flush resumes where it stopped).
    written: usize,
    /// WebSocket: one message per queued packet (binary, or text for JSON-RPC).
    frames: VecDeque<Message>,
    /// WebSocket only: `None` until the first data; then whether the session speaks JSON-RPC.
    rpc: Option<Option<JsonRpc>>,
    version: u8,
    peer: String,
}

impl Connection {
    /// A connection over an accepted TCP stream.
    pub fn tcp(stream: Socket, peer: String) -> Connection {
        Connection::new(Transport::Tcp(stream), peer)
    }

    /// A connection over an upgraded WebSocket.
    pub fn ws(stream: WebSocketStream<Socket>, peer: String) -> Connection {
        Connection::new(Transport::Ws(Box::new(stream)), peer)
    }

    fn new(transport: Transport, peer: String) -> Connection {
        Connection {
            transport,
            input: BytesMut::with_capacity(READ_ROOM),
            output: Vec::new(),
            written: 0,
            frames: VecDeque::new(),
            rpc: None,
            version: packet::LATEST_VERSION,
            peer,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The socket kind: `"tcp"` or `"ws"`.
    pub fn transport(&self) -> &'static str {
        match self.transport {
            Transport::Tcp(_) => "tcp",
            Transport::Ws(_) => "ws",
        }
    }

    /// The protocol version later packets are coded with.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Sets the negotiated protocol version.
    pub fn set_version(&mut self, version: u8) {
        self.version = version;
    }

    /// The bytes of the next whole packet; `None` when the peer closed cleanly between packets.
    /// Cancel safe: partial input stays in the buffer, so this can be a `select!` branch.
    ///
    /// # Errors
    /// [`ConnError::Protocol`] for bytes that can never be a packet or a close inside a packet;
    /// [`ConnError::Transport`] when the socket fails.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ConnError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            // JSON-RPC refusals are answered at once, not with the next packet's answer.
            if self.is_json_rpc() && !self.frames.is_empty() {
                self.flush().await?;
            }
            if !self.fill().await? {
                if self.input.is_empty() {
                    return Ok(None);
                }
                return Err(ConnError::Protocol("connection closed inside a packet".into()));
            }
        }
    }

    /// The next whole packet already in the input buffer, without reading the socket.
    ///
    /// # Errors
    /// [`ConnError::Protocol`] when the buffered bytes can never be a packet.
    pub fn buffered_frame(&mut self) -> Result<Option<Vec<u8>>, ConnError> {
        if let Some(Some(rpc)) = &mut self.rpc {
            // Each JSON-RPC message becomes the WKProto packet it stands for, coded with the session
            // version, so the session handles both protocols alike.
            loop {
                match rpc.next_message() {
                    Err(fatal) => return Err(ConnError::Protocol(fatal.0)),
                    Ok(None) => return Ok(None),
                    Ok(Some(Incoming::Packet(p))) => return Ok(Some(packet::encode_to_vec(&p, self.version)?)),
                    Ok(Some(Incoming::Refused(reply))) => {
                        let before_connect = !rpc.connected();
                        self.frames.push_back(Message::text(reply));
                        if before_connect {
                            return Err(ConnError::Protocol("the first JSON-RPC message must be a valid connect request".into()));
                        }
                    }
                }
            }
        }
        match packet::check(&self.input) {
            Ok(len) => Ok(Some(self.input.split_to(len).to_vec())),
            Err(DecodeError::Incomplete) => Ok(None),
            Err(DecodeError::Invalid(m)) => Err(ConnError::Protocol(m)),
        }
    }

    /// Reads more input; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, ConnError> {
        match &mut self.transport {
            Transport::Tcp(stream) => {
                // Reuses the room of packets already taken out when it can, else grows (doubling).
                self.input.reserve(READ_ROOM);
                let n = stream.read_buf(&mut self.input).await?;
                BYTES_IN.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n > 0)
            }
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(false),
                    Some(Err(e)) => return Err(e.into()),
                    // WuKongIM v3 accepts WKProto bytes in text messages too, and JSON-RPC in both.
                    Some(Ok(Message::Binary(data))) => {
                        BYTES_IN.fetch_add(data.len() as u64, Ordering::Relaxed);
                        Self::take(&mut self.rpc, &mut self.input, &data);
                        return Ok(true);
                    }
                    Some(Ok(Message::Text(text))) => {
                        BYTES_IN.fetch_add(text.len() as u64, Ordering::Relaxed);
                        Self::take(&mut self.rpc, &mut self.input, text.as_bytes());
                        return Ok(true);
                    }
                    // Ping, pong and raw frames are answered by tungstenite itself.
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// WebSocket input: the first data decides the protocol (spec §3.2: `{` or `[` after whitespace is
    /// JSON-RPC); then it goes to the JSON-RPC reader or the packet buffer.
    fn take(rpc: &mut Option<Option<JsonRpc>>, input: &mut BytesMut, data: &[u8]) {
        if rpc.is_none() {
            if data.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            *rpc = Some(JsonRpc::detect(data).then(JsonRpc::new));
        }
        match rpc {
            Some(Some(rpc)) => rpc.feed(data),
            _ => input.extend_from_slice(data),
        }
    }

    /// Whether this session speaks JSON-RPC (then it is never encrypted).
    pub fn is_json_rpc(&self) -> bool {
        matches!(self.rpc, Some(Some(_)))
    }

    /// Encodes `packet` with the session version into the output buffer; nothing is written until
    /// [`Connection::flush`].
    ///
    /// # Errors
    /// [`ConnError::Transport`] when the packet cannot be encoded at this version.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnError> {
        match self.transport {
            Transport::Tcp(_) => packet::encode(packet, self.version, &mut self.output)?,
            Transport::Ws(_) => match &mut self.rpc {
                Some(Some(rpc)) => {
                    if let Some(text) = rpc.outgoing(packet) {
                        self.frames.push_back(Message::text(text));
                    }
                }
                _ => self.frames.push_back(Message::binary(packet::encode_to_vec(packet, self.version)?)),
            },
        }
        Ok(())
    }

    /// Bytes queued and not yet written (approximately, for WebSocket: the messages' payloads).
    pub fn pending_output_bytes(&self) -> usize {
        self.output.len() - self.written + self.frames.iter().map(Message::len).sum::<usize>()
    }

    /// Writes everything queued.
    ///
    /// Cancel safe: a flush dropped half-way (for example by a `select!` whose other branch won)
    /// remembers what was written, and the next flush goes on from there, so no packet is cut or
    /// written twice.
    ///
    /// # Errors
    /// [`ConnError::Transport`] when the socket fails.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        match &mut self.transport {
            Transport::Tcp(stream) => {
                while self.written < self.output.len() {
                    let n = stream.write(&self.output[self.written..]).await?;
                    if n == 0 {
                        return Err(ConnError::Transport("connection closed while writing".into()));
                    }
                    self.written += n;
                    BYTES_OUT.fetch_add(n as u64, Ordering::Relaxed);
                }
                self.output.clear();
                self.written = 0;
            }
            Transport::Ws(ws) => {
                if !self.frames.is_empty() {
                    // Wait until the sink takes a message, then hand it over without another await:
                    // cancelling while waiting leaves the frame in the queue.
                    while !self.frames.is_empty() {
                        futures_util::future::poll_fn(|cx| std::pin::Pin::new(ws.as_mut()).poll_ready(cx)).await?;
                        if let Some(frame) = self.frames.pop_front() {
                            let n = frame.len() as u64;
                            std::pin::Pin::new(ws.as_mut()).start_send(frame)?;
                            BYTES_OUT.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                ws.flush().await?;
            }
        }
        Ok(())
    }

    /// Ends the connection politely after a DISCONNECT: half-closes (TCP FIN, or a WebSocket close
    /// frame) and reads and discards whatever the peer still sends until it closes too, for at most
    /// `linger`. Closing a socket that still has unread input makes the kernel reset it, and a reset
    /// can destroy data the peer has not read yet, such as the DISCONNECT.
    pub async fn close_after(&mut self, linger: Duration) {
        let drain = async {
            match &mut self.transport {
                Transport::Tcp(stream) => {
                    let _ = stream.shutdown().await;
                    // On the heap: a buffer inline would sit in every session's future for the
                    // connection's whole life, not only while it closes.
                    let mut sink = vec![0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                }
                Transport::Ws(ws) => {
                    let _ = SinkExt::close(ws.as_mut()).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            }
        };
        let _ = tokio::time::timeout(linger, drain).await;
    }

    /// Closes the socket (a WebSocket close frame on WebSocket), giving up after two seconds on a
    /// peer that does not read. Errors are ignored: the peer may already be gone.
    pub async fn close(&mut self) {
        let close = async {
            match &mut self.transport {
                Transport::Tcp(stream) => {
                    let _ = stream.shutdown().await;
                }
                Transport::Ws(ws) => {
                    let _ = SinkExt::close(ws.as_mut()).await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    }
}
