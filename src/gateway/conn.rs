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

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::packet::{self, DecodeError, EncodeError, Packet};

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
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// A buffered packet reader and writer over TCP or WebSocket.
pub struct Connection {
    transport: Transport,
    input: BytesMut,
    /// TCP: the bytes of every queued packet, back to back.
    output: Vec<u8>,
    /// WebSocket: one entry per queued packet (one binary message each).
    frames: Vec<Vec<u8>>,
    version: u8,
    peer: String,
}

impl Connection {
    /// A connection over an accepted TCP stream.
    pub fn tcp(stream: TcpStream, peer: String) -> Connection {
        Connection::new(Transport::Tcp(stream), peer)
    }

    /// A connection over an upgraded WebSocket.
    pub fn ws(stream: WebSocketStream<TcpStream>, peer: String) -> Connection {
        Connection::new(Transport::Ws(Box::new(stream)), peer)
    }

    fn new(transport: Transport, peer: String) -> Connection {
        Connection { transport, input: BytesMut::with_capacity(4096), output: Vec::new(), frames: Vec::new(), version: packet::LATEST_VERSION, peer }
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
        match packet::check(&self.input) {
            Ok(len) => Ok(Some(self.input.split_to(len).to_vec())),
            Err(DecodeError::Incomplete) => Ok(None),
            Err(DecodeError::Invalid(m)) => Err(ConnError::Protocol(m)),
        }
    }

    /// Reads more input; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, ConnError> {
        match &mut self.transport {
            Transport::Tcp(stream) => Ok(stream.read_buf(&mut self.input).await? > 0),
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(false),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Binary(data))) => {
                        self.input.extend_from_slice(&data);
                        return Ok(true);
                    }
                    // WuKongIM v3 accepts WKProto bytes in text messages too.
                    Some(Ok(Message::Text(text))) => {
                        self.input.extend_from_slice(text.as_bytes());
                        return Ok(true);
                    }
                    // Ping, pong and raw frames are answered by tungstenite itself.
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// Encodes `packet` with the session version into the output buffer; nothing is written until
    /// [`Connection::flush`].
    ///
    /// # Errors
    /// [`ConnError::Transport`] when the packet cannot be encoded at this version.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnError> {
        match self.transport {
            Transport::Tcp(_) => packet::encode(packet, self.version, &mut self.output)?,
            Transport::Ws(_) => self.frames.push(packet::encode_to_vec(packet, self.version)?),
        }
        Ok(())
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// [`ConnError::Transport`] when the socket fails.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        match &mut self.transport {
            Transport::Tcp(stream) => {
                if !self.output.is_empty() {
                    stream.write_all(&self.output).await?;
                    self.output.clear();
                }
            }
            Transport::Ws(ws) => {
                if !self.frames.is_empty() {
                    for frame in self.frames.drain(..) {
                        ws.feed(Message::binary(frame)).await?;
                    }
                    ws.flush().await?;
                }
            }
        }
        Ok(())
    }

    /// Closes the socket (a WebSocket close handshake on WebSocket). Errors are ignored: the peer may
    /// already be gone.
    pub async fn close(&mut self) {
        match &mut self.transport {
            Transport::Tcp(stream) => {
                let _ = stream.shutdown().await;
            }
            Transport::Ws(ws) => {
                let _ = SinkExt::close(ws.as_mut()).await;
            }
        }
    }
}
