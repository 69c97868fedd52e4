//! A WKProto client as the JS SDK behaves: CONNECT with an X25519 key, CONNACK, then encrypted SENDs
//! signed with a msg_key, RECVs checked and decrypted, RECVACK for each RECV, PING. Built on the server's
//! own codec and crypto (`rookery::gateway`), so it speaks exactly what the server parses.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rookery::gateway::crypto::{ServerKeyPair, SessionCipher};
use rookery::gateway::packet::{self, ConnectPacket, Header, Packet, ReasonCode, RecvPacket, RecvackPacket, SendPacket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// The JS SDK's protocol version.
pub const VERSION: u8 = 5;
/// Message payload size before encryption, the size every benchmark of the project uses.
pub const PAYLOAD: usize = 100;

/// The loopback source address for connection `i`: 127.0.0.2 .. 127.0.0.9, so no source address runs
/// out of ephemeral ports (28k each) toward the one server port.
pub fn source_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8)
}

/// Wall clock in microseconds, comparable between processes on this machine.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

/// A benchmark payload: send time (µs), message index, sender index, padded to [`PAYLOAD`] bytes.
pub fn payload(index: u32, sender: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAYLOAD);
    p.extend_from_slice(&now_us().to_be_bytes());
    p.extend_from_slice(&index.to_be_bytes());
    p.extend_from_slice(&sender.to_be_bytes());
    p.resize(PAYLOAD, b'x');
    p
}

/// (send time µs, message index, sender index) of a payload made by [`payload`].
pub fn parse_payload(p: &[u8]) -> Option<(u64, u32, u32)> {
    if p.len() < 16 {
        return None;
    }
    Some((u64::from_be_bytes(p[0..8].try_into().ok()?), u32::from_be_bytes(p[8..12].try_into().ok()?), u32::from_be_bytes(p[12..16].try_into().ok()?)))
}

/// The reading side of a session: reassembly buffer and the session's cipher.
pub struct Reader {
    rd: OwnedReadHalf,
    input: Vec<u8>,
    start: usize,
    pub cipher: SessionCipher,
}

/// The writing side of a session.
pub struct Writer {
    wr: OwnedWriteHalf,
    pub cipher: SessionCipher,
    out: Vec<u8>,
}

/// Connects from `src` to `server`, logs in as `uid` and agrees the session keys.
///
/// # Errors
/// Socket errors, a refused login, or a server that answers something else than CONNACK.
pub async fn connect(server: SocketAddr, src: Ipv4Addr, uid: &str, token: &str) -> anyhow::Result<(Reader, Writer)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src.into(), 0)).context("bind source address")?;
    let stream = socket.connect(server).await.context("connect")?;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let keys = ServerKeyPair::generate().map_err(|e| anyhow::anyhow!("client keys: {e:?}"))?;
    let connect = Packet::Connect(ConnectPacket {
        version: VERSION,
        device_flag: 0,
        device_id: format!("bench-{uid}"),
        uid: uid.into(),
        token: token.into(),
        client_timestamp: (now_us() / 1000) as i64,
        client_key: keys.public_key_base64(),
    });
    let placeholder = SessionCipher::new([0; 16], [0; 16]);
    let mut reader = Reader { rd, input: Vec::with_capacity(4096), start: 0, cipher: placeholder.clone() };
    let mut writer = Writer { wr, cipher: placeholder, out: Vec::with_capacity(512) };
    writer.queue(&connect)?;
    writer.flush().await?;
    let ack = match tokio::time::timeout(Duration::from_secs(30), reader.next()).await.context("CONNACK timeout")?? {
        Some(Packet::Connack(ack)) => ack,
        other => bail!("expected CONNACK, got {other:?}"),
    };
    if ack.reason_code != ReasonCode::SUCCESS {
        bail!("login of {uid} refused: {:?}", ack.reason_code);
    }
    let cipher = keys.agree(&ack.server_key, &ack.salt).map_err(|e| anyhow::anyhow!("key agreement: {e:?}"))?;
    reader.cipher = cipher.clone();
    writer.cipher = cipher;
    Ok((reader, writer))
}

impl Reader {
    /// The next packet, or `None` when the server closed the connection.
    ///
    /// # Errors
    /// Socket errors and undecodable bytes.
    pub async fn next(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(Some(p));
            }
            if self.start > 0 {
                self.input.drain(..self.start);
                self.start = 0;
            }
            // `read_buf` appends only when it completes, so this is cancel-safe inside `select!`.
            self.input.reserve(4096);
            let n = self.rd.read_buf(&mut self.input).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// A packet already in the buffer, without reading.
    ///
    /// # Errors
    /// Undecodable bytes.
    pub fn buffered(&mut self) -> anyhow::Result<Option<Packet>> {
        let rest = &self.input[self.start..];
        match packet::check(rest) {
            Ok(_) => {
                let (p, len) = packet::decode(rest, VERSION).map_err(|e| anyhow::anyhow!("decode: {e:?}"))?;
                self.start += len;
                Ok(Some(p))
            }
            Err(packet::DecodeError::Incomplete) => Ok(None),
            Err(e) => bail!("server sent garbage: {e:?}"),
        }
    }

    /// Checks a RECV's msg_key and decrypts its payload, as the SDK does.
    ///
    /// # Errors
    /// A wrong msg_key or an undecryptable payload.
    pub fn open(&self, recv: &RecvPacket) -> anyhow::Result<Vec<u8>> {
        self.cipher.open_recv(recv).map_err(|e| anyhow::anyhow!("RECV did not verify: {e:?}"))
    }
}

impl Writer {
    /// Queues a packet; nothing is written before [`Writer::flush`].
    ///
    /// # Errors
    /// A packet the codec refuses.
    pub fn queue(&mut self, p: &Packet) -> anyhow::Result<()> {
        packet::encode(p, VERSION, &mut self.out).map_err(|e| anyhow::anyhow!("encode: {e:?}"))
    }

    /// Queues an encrypted, signed SEND of `plain` to a channel.
    ///
    /// # Errors
    /// A packet the codec refuses.
    pub fn queue_send(&mut self, client_seq: u32, channel_id: &str, channel_type: u8, plain: &[u8]) -> anyhow::Result<()> {
        let mut send = SendPacket {
            header: Header { red_dot: true, ..Header::default() },
            client_seq,
            client_msg_no: format!("{client_seq}-{}", now_us()),
            channel_id: channel_id.into(),
            channel_type,
            payload: self.cipher.encrypt_payload(plain),
            ..SendPacket::default()
        };
        send.msg_key = self.cipher.send_msg_key(&send);
        self.queue(&Packet::Send(send))
    }

    /// Queues the RECVACK of a RECV, flags copied as the JS SDK does.
    ///
    /// # Errors
    /// A packet the codec refuses.
    pub fn queue_recvack(&mut self, recv: &RecvPacket) -> anyhow::Result<()> {
        self.queue(&Packet::Recvack(RecvackPacket { header: Header { dup: false, ..recv.header }, message_id: recv.message_id, message_seq: recv.message_seq }))
    }

    /// Writes everything queued in one write.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// Size in bytes of an encoded SEND and SENDACK of a [`PAYLOAD`]-byte message to `channel_id`, for the raw
/// socket yardstick.
pub fn frame_sizes(channel_id: &str) -> (usize, usize) {
    let cipher = SessionCipher::new([1; 16], [2; 16]);
    let mut send = SendPacket {
        header: Header { red_dot: true, ..Header::default() },
        client_seq: 1,
        client_msg_no: format!("1-{}", now_us()),
        channel_id: channel_id.into(),
        channel_type: 2,
        payload: cipher.encrypt_payload(&payload(0, 0)),
        ..SendPacket::default()
    };
    send.msg_key = cipher.send_msg_key(&send);
    let s = packet::encode_to_vec(&Packet::Send(send), VERSION).map(|v| v.len()).unwrap_or(0);
    let a = packet::encode_to_vec(
        &Packet::Sendack(packet::SendackPacket { message_id: 1, client_seq: 1, message_seq: 1, reason_code: ReasonCode::SUCCESS, ..Default::default() }),
        VERSION,
    )
    .map(|v| v.len())
    .unwrap_or(0);
    (s, a)
}
