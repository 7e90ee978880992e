//! dcr's envelope-encryption format, version 1: how a dataset is stored at rest.
//!
//! A random 256-bit data key encrypts the file with AES-256-GCM in fixed-size chunks; the data key
//! itself is stored only wrapped by Cloud KMS. Chunks are sealed in sequence with the STREAM
//! construction (nonce = random prefix ‖ chunk counter ‖ last-chunk flag), so reordering, dropping,
//! truncating or appending chunks is detected, and both sides stream with memory bounded by one
//! chunk. The provider writes this format; the launcher reads it inside the TEE.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! magic    8 bytes   "DCRENV" 0x00 0x01   (the last byte is the format version)
//! hlen     4 bytes   length of the header
//! header   hlen      UTF-8 JSON: version, algorithm, chunk_size, kms_key, wrapped_key, nonce_prefix
//! chunks   ...       AES-256-GCM(chunk) ‖ 16-byte tag, for chunks of exactly chunk_size plaintext
//!                    bytes; the last chunk (possibly empty) is shorter and has the flag set
//! ```
//!
//! Every chunk is authenticated with SHA-256(magic ‖ hlen ‖ header) as associated data, which binds
//! the header (and so the wrapped key and chunk size) to the ciphertext.

use std::io::{self, Read};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The first eight bytes of every envelope.
pub const MAGIC: [u8; 8] = *b"DCRENV\x00\x01";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const ALGORITHM: &str = "AES-256-GCM";
/// Default plaintext bytes per chunk: large enough for full AES-GCM speed, small enough that
/// memory stays flat.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
const TAG_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
/// The most a header may claim, so a hostile file cannot make a reader allocate without bound.
const MAX_HEADER_LEN: u32 = 64 * 1024;
const MAX_CHUNK_SIZE: u32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a dcr envelope (bad magic bytes)")]
    BadMagic,
    #[error("unsupported envelope format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("malformed envelope header: {0}")]
    BadHeader(String),
    #[error("chunk {0} failed authentication: the data was modified, truncated or decrypted with the wrong key")]
    Authentication(u64),
    #[error("the envelope ends before its final chunk: the data was truncated")]
    Truncated,
    #[error("the data key must be 32 bytes")]
    BadKey,
    #[error("too many chunks for one data key")]
    TooManyChunks,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The JSON header. `wrapped_key` is the data key as returned by KMS `encrypt` under `kms_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub algorithm: String,
    pub chunk_size: u32,
    /// Full resource name of the KMS key that wrapped the data key.
    pub kms_key: String,
    /// Base64 of the KMS ciphertext of the data key.
    pub wrapped_key: String,
    /// Base64 of the 7-byte random nonce prefix.
    pub nonce_prefix: String,
}

impl Header {
    /// A header for a new envelope with a fresh random nonce prefix.
    pub fn new(kms_key: &str, wrapped_key: &[u8], chunk_size: u32) -> Header {
        let mut prefix = [0u8; PREFIX_LEN];
        aws_lc_rs::rand::fill(&mut prefix).expect("system randomness");
        Header {
            version: FORMAT_VERSION,
            algorithm: ALGORITHM.to_string(),
            chunk_size,
            kms_key: kms_key.to_string(),
            wrapped_key: B64.encode(wrapped_key),
            nonce_prefix: B64.encode(prefix),
        }
    }

    pub fn wrapped_key_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        B64.decode(&self.wrapped_key).map_err(|e| EnvelopeError::BadHeader(format!("wrapped_key: {e}")))
    }

    fn prefix(&self) -> Result<[u8; PREFIX_LEN], EnvelopeError> {
        let p = B64.decode(&self.nonce_prefix).map_err(|e| EnvelopeError::BadHeader(format!("nonce_prefix: {e}")))?;
        p.try_into().map_err(|_| EnvelopeError::BadHeader("nonce_prefix must be 7 bytes".into()))
    }

    fn validate(&self) -> Result<(), EnvelopeError> {
        if self.version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.version));
        }
        if self.algorithm != ALGORITHM {
            return Err(EnvelopeError::BadHeader(format!("unsupported algorithm {:?}", self.algorithm)));
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(EnvelopeError::BadHeader(format!("chunk_size {} out of range", self.chunk_size)));
        }
        self.prefix().map(|_| ())
    }
}

/// Associated data for KMS when wrapping a data key: binds the wrapped key to the object it
/// encrypts, so a wrapped key copied onto another object does not unwrap.
pub fn wrap_aad(bucket: &str, object: &str) -> Vec<u8> {
    format!("dcr-envelope-v1:gs://{bucket}/{object}").into_bytes()
}

/// A fresh random 256-bit data key.
pub fn generate_data_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    aws_lc_rs::rand::fill(&mut k).expect("system randomness");
    k
}

/// The bytes that precede the chunks, and the associated data every chunk is sealed with.
fn preamble(header: &Header) -> (Vec<u8>, [u8; 32]) {
    let json = serde_json::to_vec(header).expect("header JSON");
    let mut out = Vec::with_capacity(12 + json.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    let aad: [u8; 32] = digest::digest(&digest::SHA256, &out).as_ref().try_into().expect("sha256 length");
    (out, aad)
}

fn nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

fn key(data_key: &[u8]) -> Result<LessSafeKey, EnvelopeError> {
    let k = UnboundKey::new(&AES_256_GCM, data_key).map_err(|_| EnvelopeError::BadKey)?;
    Ok(LessSafeKey::new(k))
}

/// Reads plaintext from `inner` and yields the envelope bytes: a streaming encryptor.
pub struct EncryptingReader<R> {
    inner: R,
    key: LessSafeKey,
    prefix: [u8; PREFIX_LEN],
    aad: [u8; 32],
    chunk_size: usize,
    counter: u32,
    /// Ciphertext ready to hand out, and how much of it was already handed out.
    out: Vec<u8>,
    out_pos: usize,
    /// Plaintext read ahead, so we know whether a full chunk is the last one.
    pending: Vec<u8>,
    done: bool,
}

impl<R: Read> EncryptingReader<R> {
    pub fn new(inner: R, data_key: &[u8], header: &Header) -> Result<Self, EnvelopeError> {
        header.validate()?;
        let (pre, aad) = preamble(header);
        Ok(EncryptingReader {
            inner,
            key: key(data_key)?,
            prefix: header.prefix()?,
            aad,
            chunk_size: header.chunk_size as usize,
            counter: 0,
            out: pre,
            out_pos: 0,
            pending: Vec::with_capacity(header.chunk_size as usize + 1),
            done: false,
        })
    }

    /// Reads until `pending` holds more than one chunk (so the next chunk is not the last) or the
    /// input ends.
    fn fill_pending(&mut self) -> io::Result<bool> {
        let want = self.chunk_size + 1;
        while self.pending.len() < want {
            let start = self.pending.len();
            self.pending.resize(want, 0);
            let n = self.inner.read(&mut self.pending[start..])?;
            self.pending.truncate(start + n);
            if n == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn seal_next(&mut self) -> io::Result<()> {
        let eof = self.fill_pending()?;
        let last = eof && self.pending.len() <= self.chunk_size;
        // Seal the chunk in place and hand its buffer out, reusing the old output buffer for the
        // next chunk: no per-chunk allocation or copy beyond the read itself.
        let carry = if self.pending.len() > self.chunk_size { self.pending.pop() } else { None };
        let n = nonce(&self.prefix, self.counter, last);
        self.key
            .seal_in_place_append_tag(n, Aad::from(self.aad), &mut self.pending)
            .map_err(|_| io::Error::other("AES-GCM seal failed"))?;
        self.counter =
            self.counter.checked_add(1).ok_or_else(|| io::Error::other(EnvelopeError::TooManyChunks.to_string()))?;
        std::mem::swap(&mut self.out, &mut self.pending);
        self.pending.clear();
        self.pending.extend(carry);
        self.out_pos = 0;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.seal_next()?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Reads the magic bytes and header from the start of an envelope.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header, EnvelopeError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| EnvelopeError::BadMagic)?;
    if magic[..7] != MAGIC[..7] {
        return Err(EnvelopeError::BadMagic);
    }
    if magic[7] as u32 != FORMAT_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(magic[7] as u32));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|_| EnvelopeError::Truncated)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_HEADER_LEN {
        return Err(EnvelopeError::BadHeader(format!("header of {len} bytes is too large")));
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json).map_err(|_| EnvelopeError::Truncated)?;
    let header: Header = serde_json::from_slice(&json).map_err(|e| EnvelopeError::BadHeader(e.to_string()))?;
    header.validate()?;
    // The associated data covers the bytes as written, so re-serialising must reproduce them.
    if preamble(&header).0[12..] != json[..] {
        return Err(EnvelopeError::BadHeader("header is not in canonical form".into()));
    }
    Ok(header)
}

/// Yields the plaintext of an envelope whose header was already read with [`read_header`].
pub struct DecryptingReader<R> {
    inner: R,
    key: LessSafeKey,
    prefix: [u8; PREFIX_LEN],
    aad: [u8; 32],
    chunk_size: usize,
    counter: u32,
    buf: Vec<u8>,
    /// One byte read past the previous chunk.
    carry: Option<u8>,
    out_start: usize,
    out_end: usize,
    done: bool,
}

impl<R: Read> DecryptingReader<R> {
    pub fn new(inner: R, data_key: &[u8], header: &Header) -> Result<Self, EnvelopeError> {
        let (_, aad) = preamble(header);
        Ok(DecryptingReader {
            inner,
            key: key(data_key)?,
            prefix: header.prefix()?,
            aad,
            chunk_size: header.chunk_size as usize,
            counter: 0,
            buf: Vec::with_capacity(header.chunk_size as usize + TAG_LEN + 1),
            carry: None,
            out_start: 0,
            out_end: 0,
            done: false,
        })
    }

    fn open_next(&mut self) -> Result<(), EnvelopeError> {
        // Read one sealed chunk plus one byte: a full chunk followed by more data is not the last.
        let sealed = self.chunk_size + TAG_LEN;
        self.buf.clear();
        self.buf.extend(self.carry.take());
        let mut got = self.buf.len();
        self.buf.resize(sealed + 1, 0);
        while got < sealed + 1 {
            let n = self.inner.read(&mut self.buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.buf.truncate(got);
        if got < TAG_LEN {
            return Err(EnvelopeError::Truncated);
        }
        let last = got <= sealed;
        if !last {
            // The byte read ahead starts the next chunk.
            self.carry = self.buf.pop();
        }
        let counter = self.counter;
        // A failed open may clobber the buffer, so keep the final chunk to diagnose truncation.
        let final_copy = if last { Some(self.buf.clone()) } else { None };
        let opened = self.key.open_in_place(nonce(&self.prefix, counter, last), Aad::from(self.aad), &mut self.buf);
        let plain_len = match opened {
            Ok(p) => p.len(),
            Err(_) => {
                // A stream cut at a chunk boundary ends with a chunk sealed as "not last".
                let not_last = nonce(&self.prefix, counter, false);
                let sealed_as_middle = final_copy
                    .is_some_and(|mut copy| self.key.open_in_place(not_last, Aad::from(self.aad), &mut copy).is_ok());
                return Err(if sealed_as_middle {
                    EnvelopeError::Truncated
                } else {
                    EnvelopeError::Authentication(counter as u64)
                });
            }
        };
        self.buf.truncate(plain_len);
        self.out_start = 0;
        self.out_end = plain_len;
        self.counter = self.counter.checked_add(1).ok_or(EnvelopeError::TooManyChunks)?;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.out_start == self.out_end {
            if self.done {
                return Ok(0);
            }
            self.open_next().map_err(io::Error::other)?;
        }
        let n = out.len().min(self.out_end - self.out_start);
        out[..n].copy_from_slice(&self.buf[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// Decrypts a whole envelope held in memory (small objects and tests).
pub fn open_all(envelope: &[u8], data_key: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut r = envelope;
    let header = read_header(&mut r)?;
    let mut out = Vec::new();
    DecryptingReader::new(r, data_key, &header)?.read_to_end(&mut out).map_err(unwrap_io)?;
    Ok(out)
}

/// Recovers an [`EnvelopeError`] that travelled through `std::io::Read`.
pub fn unwrap_io(e: io::Error) -> EnvelopeError {
    match e.downcast::<EnvelopeError>() {
        Ok(inner) => inner,
        Err(e) => EnvelopeError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], chunk: u32) -> (Vec<u8>, [u8; 32]) {
        let k = generate_data_key();
        let h = Header::new("projects/p/locations/global/keyRings/r/cryptoKeys/k", b"wrapped", chunk);
        let mut out = Vec::new();
        EncryptingReader::new(data, &k, &h).unwrap().read_to_end(&mut out).unwrap();
        (out, k)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (env, k) = seal(&data, 16);
            assert_eq!(open_all(&env, &k).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let data = b"alice,42,secret-diagnosis\n".repeat(10);
        let (env, _) = seal(&data, 64);
        assert!(!env.windows(12).any(|w| w == b"secret-diagn"));
    }

    #[test]
    fn tampering_is_detected() {
        let (mut env, k) = seal(&[7u8; 100], 16);
        let last = env.len() - 1;
        env[last] ^= 1;
        assert!(matches!(open_all(&env, &k), Err(EnvelopeError::Authentication(_))));
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_detected() {
        let (env, k) = seal(&[7u8; 100], 16);
        let header_len = 12 + u32::from_be_bytes(env[8..12].try_into().unwrap()) as usize;
        let cut = &env[..header_len + 2 * (16 + TAG_LEN)];
        assert!(matches!(open_all(cut, &k), Err(EnvelopeError::Truncated)));
        let cut = &env[..header_len];
        let r = open_all(cut, &k);
        assert!(matches!(r, Err(EnvelopeError::Truncated)), "{r:?}");
    }

    #[test]
    fn swapped_chunks_are_detected() {
        let (mut env, k) = seal(&[1u8; 16].iter().chain(&[2u8; 16]).chain(&[3u8; 5]).copied().collect::<Vec<_>>(), 16);
        let h = 12 + u32::from_be_bytes(env[8..12].try_into().unwrap()) as usize;
        let c = 16 + TAG_LEN;
        let (a, b) = env[h..h + 2 * c].split_at_mut(c);
        a.swap_with_slice(b);
        assert!(matches!(open_all(&env, &k), Err(EnvelopeError::Authentication(0))));
    }

    #[test]
    fn wrong_key_fails() {
        let (env, _) = seal(b"hello", 16);
        assert!(open_all(&env, &generate_data_key()).is_err());
    }

    #[test]
    fn header_tampering_is_detected() {
        let (env, k) = seal(b"hello world", 16);
        let at = env.windows(12).position(|w| w == b"cryptoKeys/k").unwrap() + 11;
        let mut forged = env.clone();
        forged[at] = b'x';
        assert!(matches!(open_all(&forged, &k), Err(EnvelopeError::Authentication(0))));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(matches!(open_all(b"", &[0; 32]), Err(EnvelopeError::BadMagic)));
        assert!(matches!(open_all(b"DCRENV\x00\x09xxxx", &[0; 32]), Err(EnvelopeError::UnsupportedVersion(9))));
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(open_all(&big, &[0; 32]), Err(EnvelopeError::BadHeader(_))));
    }
}
