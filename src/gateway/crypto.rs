//! The server side of WKProto's key agreement and payload encryption, exactly as the WuKongIM
//! SDKs do it (spec §2).
//!
//! X25519 between a fresh server key pair and the client's `client_key` gives a shared secret; the
//! AES-128 key is the first 16 characters of the lowercase hex MD5 of the secret's standard base64
//! text, and the IV is the 16 ASCII characters of the CONNACK `salt`. Payloads travel as the base64
//! text of AES-128-CBC/PKCS#7 ciphertext, and SEND/RECV carry a `msg_key` that authenticates their
//! identifying fields. None of this is strong cryptography (a fixed IV per session, MD5); it is
//! what the clients speak.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

use super::packet::{ReasonCode, RecvPacket, SendPacket};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Length of the salt, which is the CBC IV: 16 ASCII characters.
pub const SALT_LEN: usize = 16;

/// Characters a salt is drawn from (WuKongIM's `GetRandomString` alphabet).
const SALT_ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Why a handshake or a payload operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// CONNECT carried an empty `client_key`.
    #[error("client key is empty")]
    EmptyClientKey,
    /// `client_key` is not base64 of 32 bytes, or is a low-order point.
    #[error("bad client key: {0}")]
    BadClientKey(String),
    /// The salt is not 16 bytes.
    #[error("salt must be {SALT_LEN} bytes, got {0}")]
    BadSalt(usize),
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// A SEND's msg_key does not match its fields.
    #[error("msg_key mismatch")]
    MsgKeyMismatch,
    /// A payload is not base64 of whole AES blocks with valid PKCS#7 padding.
    #[error("payload does not decrypt: {0}")]
    BadPayload(String),
}

impl CryptoError {
    /// The reason code WuKongIM answers with: CONNACK 21 or 2 for key problems, 15 for a failed random
    /// source, SENDACK 9 for a SEND that does not verify or decrypt.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::EmptyClientKey => ReasonCode::CLIENT_KEY_IS_EMPTY,
            Self::BadClientKey(_) => ReasonCode::AUTH_FAIL,
            Self::BadSalt(_) | Self::Random(_) => ReasonCode::SYSTEM_ERROR,
            Self::MsgKeyMismatch | Self::BadPayload(_) => ReasonCode::PAYLOAD_DECODE_ERROR,
        }
    }
}

/// The server's X25519 key pair for one connection.
pub struct ServerKeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for ServerKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("ServerKeyPair").field("public", &self.public_key_base64()).finish_non_exhaustive()
    }
}

impl ServerKeyPair {
    /// A fresh key pair from the operating system's random source (one per connection).
    ///
    /// # Errors
    /// [`CryptoError::Random`] when the random source fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self::from_secret_bytes(bytes))
    }

    /// The key pair for a given 32-byte private scalar (clamped as X25519 requires). For tests and
    /// test vectors; production uses [`ServerKeyPair::generate`].
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The public key, 32 bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The CONNACK `server_key`: standard base64 of the public key.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public.as_bytes())
    }

    /// The X25519 shared secret with the client whose CONNECT carried `client_key`.
    ///
    /// # Errors
    /// [`CryptoError::EmptyClientKey`] for an empty key; [`CryptoError::BadClientKey`] when it is not
    /// standard base64 of exactly 32 bytes, or when it is a low-order point (the secret would be all
    /// zeros, which no real client produces).
    pub fn shared_secret(&self, client_key: &str) -> Result<[u8; 32], CryptoError> {
        if client_key.is_empty() {
            return Err(CryptoError::EmptyClientKey);
        }
        let bytes = STANDARD.decode(client_key).map_err(|e| CryptoError::BadClientKey(format!("not base64: {e}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| CryptoError::BadClientKey(format!("{} bytes instead of 32", b.len())))?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(bytes));
        if !shared.was_contributory() {
            return Err(CryptoError::BadClientKey("low-order point".into()));
        }
        Ok(shared.to_bytes())
    }

    /// Agrees on the session cipher with the client whose CONNECT carried `client_key`, using the
    /// `salt` the CONNACK will carry.
    ///
    /// # Errors
    /// As [`ServerKeyPair::shared_secret`], and [`CryptoError::BadSalt`].
    pub fn agree(&self, client_key: &str, salt: &str) -> Result<SessionCipher, CryptoError> {
        SessionCipher::from_shared_secret(&self.shared_secret(client_key)?, salt)
    }
}

/// What the server needs after a successful key agreement: the CONNACK fields and the cipher.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// CONNACK `server_key`.
    pub server_key: String,
    /// CONNACK `salt` (the IV).
    pub salt: String,
    /// The session's cipher.
    pub cipher: SessionCipher,
}

/// The whole server side of the handshake for one CONNECT: a fresh key pair and salt, then the
/// agreed cipher.
///
/// # Errors
/// As [`ServerKeyPair::agree`] and [`random_salt`]; [`CryptoError::reason_code`] gives the CONNACK code.
pub fn server_handshake(client_key: &str) -> Result<Handshake, CryptoError> {
    let pair = ServerKeyPair::generate()?;
    let salt = random_salt()?;
    let cipher = pair.agree(client_key, &salt)?;
    Ok(Handshake { server_key: pair.public_key_base64(), salt, cipher })
}

/// Sixteen random characters from `[0-9a-zA-Z]`, from the operating system's random source.
///
/// # Errors
/// [`CryptoError::Random`] when the random source fails.
pub fn random_salt() -> Result<String, CryptoError> {
    let mut salt = String::with_capacity(SALT_LEN);
    let mut pool = [0u8; 32];
    while salt.len() < SALT_LEN {
        getrandom::fill(&mut pool).map_err(|e| CryptoError::Random(e.to_string()))?;
        // Rejection sampling: 248 = 4 × 62, so accepted bytes map onto the alphabet without bias.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if salt.len() == SALT_LEN {
                break;
            }
            salt.push(char::from(SALT_ALPHABET[usize::from(b) % SALT_ALPHABET.len()]));
        }
    }
    Ok(salt)
}

/// The AES-128 key derived from an X25519 shared secret: the first 16 characters of the lowercase hex
/// MD5 of the secret's standard base64 text. Those ASCII characters are the key bytes.
pub fn derive_aes_key(shared: &[u8; 32]) -> [u8; 16] {
    let hex = md5_hex(STANDARD.encode(shared).as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&hex.as_bytes()[..16]);
    key
}

/// A session's AES-128-CBC key and IV. Fixed for the life of the connection; the IV is reused for
/// every message because that is what the clients do.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCipher {
    key: [u8; 16],
    iv: [u8; 16],
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("SessionCipher").finish_non_exhaustive()
    }
}

impl SessionCipher {
    /// A cipher from raw key and IV bytes.
    pub fn new(key: [u8; 16], iv: [u8; 16]) -> Self {
        Self { key, iv }
    }

    /// The cipher for a shared secret and the CONNACK salt.
    ///
    /// # Errors
    /// [`CryptoError::BadSalt`] unless the salt is exactly 16 bytes (the JS SDK uses the first 16
    /// characters as IV, so a server must send exactly 16 ASCII characters).
    pub fn from_shared_secret(shared: &[u8; 32], salt: &str) -> Result<Self, CryptoError> {
        let iv: [u8; 16] = salt.as_bytes().try_into().map_err(|_| CryptoError::BadSalt(salt.len()))?;
        Ok(Self { key: derive_aes_key(shared), iv })
    }

    /// The key bytes (16 ASCII hex characters after a handshake).
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }

    /// The IV bytes (the salt).
    pub fn iv(&self) -> &[u8; 16] {
        &self.iv
    }

    /// Encrypts a payload for the wire: the standard base64 text (as ASCII bytes) of the
    /// AES-128-CBC/PKCS#7 ciphertext.
    pub fn encrypt_payload(&self, plain: &[u8]) -> Vec<u8> {
        STANDARD.encode(self.encrypt_raw(plain)).into_bytes()
    }

    /// Decrypts a payload as it came off the wire (base64 text of the ciphertext).
    ///
    /// # Errors
    /// [`CryptoError::BadPayload`] when it is not standard base64, not whole blocks, or the padding is
    /// wrong.
    pub fn decrypt_payload(&self, wire: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ciphertext = STANDARD.decode(wire).map_err(|e| CryptoError::BadPayload(format!("not base64: {e}")))?;
        Aes128CbcDec::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec::<Pkcs7>(&ciphertext)
            .map_err(|_| CryptoError::BadPayload("bad length or padding".into()))
    }

    /// `msg_key` of a sign string: lowercase hex MD5 of the base64 text of the string encrypted with
    /// the session cipher (32 characters).
    pub fn msg_key(&self, sign: &[u8]) -> String {
        md5_hex(self.encrypt_payload(sign).as_slice())
    }

    /// The msg_key a SEND must carry, computed over its fields as received.
    pub fn send_msg_key(&self, send: &SendPacket) -> String {
        self.msg_key(&send_sign_string(send))
    }

    /// Checks a SEND's msg_key, then decrypts its payload. This is the whole server-side
    /// authentication of a SEND.
    ///
    /// # Errors
    /// [`CryptoError::MsgKeyMismatch`] or [`CryptoError::BadPayload`]; both map to SENDACK reason 9.
    pub fn open_send(&self, send: &SendPacket) -> Result<Vec<u8>, CryptoError> {
        let expected = self.send_msg_key(send);
        // Constant-time so that the comparison does not leak how much of a forged key matched.
        if !bool::from(expected.as_bytes().ct_eq(send.msg_key.as_bytes())) {
            return Err(CryptoError::MsgKeyMismatch);
        }
        self.decrypt_payload(&send.payload)
    }

    /// The msg_key a RECV must carry, over its fields exactly as they will be sent.
    pub fn recv_msg_key(&self, recv: &RecvPacket) -> String {
        self.msg_key(&recv_sign_string(recv))
    }

    /// Encrypts `plain` into `recv.payload` and sets `recv.msg_key`. Call it last, after every field
    /// that the sign string covers (ids, seq, timestamp, from_uid, per-recipient channel id) is final.
    pub fn seal_recv(&self, recv: &mut RecvPacket, plain: &[u8]) {
        recv.payload = self.encrypt_payload(plain);
        recv.msg_key = self.recv_msg_key(recv);
    }

    /// Checks a RECV's msg_key and decrypts it, as the client does. The server never receives RECVs;
    /// tests and client tools use this.
    ///
    /// # Errors
    /// [`CryptoError::MsgKeyMismatch`] or [`CryptoError::BadPayload`].
    pub fn open_recv(&self, recv: &RecvPacket) -> Result<Vec<u8>, CryptoError> {
        if !bool::from(self.recv_msg_key(recv).as_bytes().ct_eq(recv.msg_key.as_bytes())) {
            return Err(CryptoError::MsgKeyMismatch);
        }
        self.decrypt_payload(&recv.payload)
    }

    fn encrypt_raw(&self, plain: &[u8]) -> Vec<u8> {
        Aes128CbcEnc::new(&self.key.into(), &self.iv.into()).encrypt_padded_vec::<Pkcs7>(plain)
    }
}

/// The SEND sign string: decimal `client_seq`, `client_msg_no`, `channel_id`, decimal
/// `channel_type`, then the payload as sent, with no separators.
pub fn send_sign_string(send: &SendPacket) -> Vec<u8> {
    let mut s = format!("{}{}{}{}", send.client_seq, send.client_msg_no, send.channel_id, send.channel_type).into_bytes();
    s.extend_from_slice(&send.payload);
    s
}

/// The RECV sign string: decimal `message_id`, decimal `message_seq`, `client_msg_no`, decimal
/// `timestamp`, `from_uid`, `channel_id`, decimal `channel_type`, then the payload as sent.
pub fn recv_sign_string(recv: &RecvPacket) -> Vec<u8> {
    let mut s =
        format!("{}{}{}{}{}{}{}", recv.message_id, recv.message_seq, recv.client_msg_no, recv.timestamp, recv.from_uid, recv.channel_id, recv.channel_type)
            .into_bytes();
    s.extend_from_slice(&recv.payload);
    s
}

fn md5_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    Md5::digest(data).iter().fold(String::with_capacity(32), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
