//! Property tests of the envelope format: whatever the plaintext, chunk size and read pattern,
//! decryption gives back the plaintext; any change to the envelope (one byte flipped, a cut, bytes
//! appended, another key) makes decryption fail — an error, never a panic, never other plaintext;
//! and arbitrary bytes never panic the header parser.
//!
//! Case counts honour `PROPTEST_CASES` when it is set.

use std::io::{self, Read};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dcr_envelope::{
    DecryptingReader, EncryptingReader, EnvelopeError, FORMAT_VERSION, Header, MAGIC, generate_data_key, open_all,
    read_header, unwrap_io,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};

const TAG_LEN: usize = 16;
/// The largest chunk size the format accepts (`MAX_CHUNK_SIZE` in lib.rs, not public).
const MAX_CHUNK_SIZE: u32 = 64 << 20;

fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c
}

/// A reader that hands out at most a few bytes per call, cycling through `sizes`: streaming code
/// must not assume a read fills its buffer.
struct ShortReads<R> {
    inner: R,
    sizes: Vec<usize>,
    i: usize,
}

impl<R: Read> Read for ShortReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = buf.len().min(max);
        self.inner.read(&mut buf[..n])
    }
}

fn short_reads<R: Read>(inner: R, sizes: &[usize]) -> ShortReads<R> {
    ShortReads { inner, sizes: if sizes.is_empty() { vec![usize::MAX] } else { sizes.to_vec() }, i: 0 }
}

/// Reads `r` to its end with buffers of the given sizes (cycled). On error, returns what was read
/// before it along with the error.
fn read_all_with<R: Read>(mut r: R, sizes: &[usize]) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; sizes.iter().copied().max().unwrap_or(8192).max(1)];
    let mut i = 0;
    loop {
        let want = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(8192).max(1);
        i += 1;
        match r.read(&mut buf[..want]) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

fn arb_kms_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("projects/p/locations/global/keyRings/r/cryptoKeys/k".to_string()),
        1 => prop::collection::vec(
            prop_oneof![any::<char>(), select(vec!['"', '\\', '\n', '\0', '\u{7f}', '\u{2028}', '😀', '/'])],
            0..40,
        )
        .prop_map(String::from_iter),
    ]
}

/// Plaintext and a chunk size: small files cut into many small chunks, or files up to 200 KiB in
/// chunks of 64 bytes to 70000 (so no case has more than a few thousand chunks), with lengths at
/// and around chunk boundaries over-represented.
fn arb_plain_and_chunk(max_len: usize) -> impl Strategy<Value = (Vec<u8>, u32)> {
    let small = (1u32..=64, 0usize..2048.min(max_len + 1));
    let large = (prop_oneof![64u32..=4096, 4096u32..=70_000], 0usize..=max_len);
    prop_oneof![small, large]
        .prop_flat_map(move |(chunk, len)| {
            let c = chunk as usize;
            // Half the time snap the length to k·chunk + {-1, 0, 1}.
            let boundary = (0usize..=len / c + 1, -1isize..=1)
                .prop_map(move |(k, d)| (k * c).saturating_add_signed(d).min(max_len));
            let len = prop_oneof![Just(len), boundary];
            (len, Just(chunk))
        })
        .prop_flat_map(|(len, chunk)| (prop::collection::vec(any::<u8>(), len), Just(chunk)))
}

fn arb_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..=17, 1usize..=100_000], 1..5)
}

struct Sealed {
    plain: Vec<u8>,
    envelope: Vec<u8>,
    key: [u8; 32],
    header: Header,
}

fn seal(plain: Vec<u8>, chunk: u32, kms_key: &str, reads: &[usize]) -> Sealed {
    let key = generate_data_key();
    let header = Header::new(kms_key, b"wrapped-data-key", chunk);
    let enc = EncryptingReader::new(short_reads(&plain[..], reads), &key, &header).expect("valid header");
    let (envelope, err) = read_all_with(enc, reads);
    assert!(err.is_none(), "encryption failed: {err:?}");
    Sealed { plain, envelope, key, header }
}

fn small_sealed() -> impl Strategy<Value = Sealed> {
    (arb_plain_and_chunk(8 << 10), arb_kms_key(), arb_sizes())
        .prop_map(|((plain, chunk), kms, reads)| seal(plain, chunk, &kms, &reads))
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealed {{ plain: {} bytes, chunk_size: {}, envelope: {} bytes, kms_key: {:?} }}",
            self.plain.len(),
            self.header.chunk_size,
            self.envelope.len(),
            self.header.kms_key
        )
    }
}

/// Decrypts `envelope` both ways (all at once, and streamed with odd read sizes) and requires
/// both to fail; what the stream handed out before failing must be a prefix of the plaintext
/// (chunks before the damage are genuine), never anything else.
fn must_fail(envelope: &[u8], key: &[u8], plain: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
    if let Ok(got) = open_all(envelope, key) {
        return Err(TestCaseError::fail(format!(
            "open_all accepted a damaged envelope (gave {} bytes, plaintext {} bytes, same: {})",
            got.len(),
            plain.len(),
            got == plain
        )));
    }
    let mut r = short_reads(envelope, sizes);
    let header = match read_header(&mut r) {
        Ok(h) => h,
        Err(_) => return Ok(()),
    };
    let dec = match DecryptingReader::new(r, key, &header) {
        Ok(d) => d,
        Err(_) => return Ok(()),
    };
    let (out, err) = read_all_with(dec, sizes);
    prop_assert!(err.is_some(), "the stream ended cleanly with {} bytes (plaintext {})", out.len(), plain.len());
    prop_assert!(plain.starts_with(&out), "the stream handed out {} bytes that are not the plaintext's", out.len());
    Ok(())
}

proptest! {
    #![proptest_config(cases(64))]

    /// Whatever the plaintext (0 to 200 KiB), chunk size and read pattern, both decryption paths
    /// give back the plaintext, and the envelope has exactly the expected size.
    #[test]
    fn round_trips(
        (plain, chunk) in arb_plain_and_chunk(200 << 10),
        kms in arb_kms_key(),
        reads in arb_sizes(),
        out_sizes in arb_sizes(),
    ) {
        let s = seal(plain, chunk, &kms, &reads);
        prop_assert_eq!(&open_all(&s.envelope, &s.key).map_err(|e| TestCaseError::fail(e.to_string()))?, &s.plain);

        let mut r = short_reads(&s.envelope[..], &reads);
        let header = read_header(&mut r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&header, &s.header);
        let dec = DecryptingReader::new(r, &s.key, &header).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (out, err) = read_all_with(dec, &out_sizes);
        prop_assert!(err.is_none(), "{:?}", err.map(unwrap_io));
        prop_assert_eq!(&out, &s.plain);

        // magic, hlen, header, then one tag per chunk; a plaintext that fills its last chunk
        // exactly has no empty chunk after it, and an empty one is one empty chunk.
        let hlen = u32::from_be_bytes(s.envelope[8..12].try_into().unwrap()) as usize;
        let chunks = s.plain.len().div_ceil(chunk as usize).max(1);
        prop_assert_eq!(s.envelope.len(), 12 + hlen + s.plain.len() + chunks * TAG_LEN);
        prop_assert_eq!(&s.envelope[..8], &MAGIC[..]);
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// Flipping any bits of any one byte makes decryption fail.
    #[test]
    fn any_flipped_byte_is_detected(s in small_sealed(), at in any::<Index>(), mask in 1u8..=255, sizes in arb_sizes()) {
        let mut env = s.envelope.clone();
        let i = at.index(env.len());
        env[i] ^= mask;
        must_fail(&env, &s.key, &s.plain, &sizes)?;
    }

    /// Cutting the envelope anywhere before its end makes decryption fail.
    #[test]
    fn any_truncation_is_detected(s in small_sealed(), at in any::<Index>(), sizes in arb_sizes()) {
        let cut = at.index(s.envelope.len());
        must_fail(&s.envelope[..cut], &s.key, &s.plain, &sizes)?;
    }

    /// Truncation at each chunk boundary in particular (the cut that leaves only whole chunks).
    #[test]
    fn truncation_at_chunk_boundaries_is_detected(s in small_sealed(), k in any::<Index>(), sizes in arb_sizes()) {
        let hlen = 12 + u32::from_be_bytes(s.envelope[8..12].try_into().unwrap()) as usize;
        let sealed_chunk = s.header.chunk_size as usize + TAG_LEN;
        // Every boundary before the end (the header's end at least).
        let cuts: Vec<usize> = (0..).map(|k| hlen + k * sealed_chunk).take_while(|&c| c < s.envelope.len()).collect();
        let cut = cuts[k.index(cuts.len())];
        must_fail(&s.envelope[..cut], &s.key, &s.plain, &sizes)?;
    }

    /// Appending anything after the last chunk makes decryption fail.
    #[test]
    fn appended_bytes_are_detected(s in small_sealed(), extra in prop::collection::vec(any::<u8>(), 1..100), sizes in arb_sizes()) {
        let mut env = s.envelope.clone();
        env.extend_from_slice(&extra);
        must_fail(&env, &s.key, &s.plain, &sizes)?;
    }

    /// A chunk dropped or repeated, or two chunks swapped, makes decryption fail.
    #[test]
    fn reordered_chunks_are_detected(
        s in small_sealed().prop_filter("two chunks or more", |s| s.plain.len() > s.header.chunk_size as usize),
        a in any::<Index>(),
        b in any::<Index>(),
        op in 0u8..3,
        sizes in arb_sizes(),
    ) {
        let hlen = 12 + u32::from_be_bytes(s.envelope[8..12].try_into().unwrap()) as usize;
        let c = s.header.chunk_size as usize + TAG_LEN;
        let chunks: Vec<&[u8]> = s.envelope[hlen..].chunks(c).collect();
        prop_assert!(chunks.len() >= 2);
        let i = a.index(chunks.len());
        // Another chunk than i.
        let j = (i + 1 + b.index(chunks.len() - 1)) % chunks.len();
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        match op {
            0 => { order.remove(i); }
            1 => order.insert(i, j),
            _ => order.swap(i, j),
        }
        let mut env = s.envelope[..hlen].to_vec();
        for k in order {
            env.extend_from_slice(chunks[k]);
        }
        prop_assert!(env != s.envelope);
        must_fail(&env, &s.key, &s.plain, &sizes)?;
    }

    /// Another data key fails.
    #[test]
    fn another_key_fails(s in small_sealed(), sizes in arb_sizes()) {
        must_fail(&s.envelope, &generate_data_key(), &s.plain, &sizes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input to the header parser

/// Bytes that start like an envelope often enough to reach the header's JSON.
fn arb_envelope_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let json_ish = prop::collection::vec(
        prop_oneof![any::<u8>(), select(b"{}[]\":,0123456789-.eE \\tnrufalsecnhk_".to_vec())],
        0..600,
    );
    prop_oneof![
        // Anything at all.
        prop::collection::vec(any::<u8>(), 0..4096),
        // The magic, then a length (often near the rest's length, sometimes hostile), then junk.
        (
            select(vec![MAGIC.to_vec(), b"DCRENV\x00\x02".to_vec(), b"DCRENV\x00\x00".to_vec(), b"DCREN".to_vec()]),
            prop_oneof![any::<u32>(), 0u32..700, select(vec![u32::MAX, 64 * 1024, 64 * 1024 + 1])],
            json_ish,
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(magic, len, json, body)| {
                let mut v = magic;
                v.extend_from_slice(&len.to_be_bytes());
                v.extend_from_slice(&json);
                v.extend_from_slice(&body);
                v
            }),
    ]
}

/// Headers with hostile fields, written as the writer would (canonical JSON).
fn arb_header_bytes() -> impl Strategy<Value = (Header, Vec<u8>)> {
    // Valid base64 of any length, or junk from the base64 alphabet and its URL-safe cousin.
    let b64 = |n: std::ops::Range<usize>| {
        prop_oneof![prop::collection::vec(any::<u8>(), n).prop_map(|b| B64.encode(b)), "[A-Za-z0-9+/=_-]{0,16}",]
    };
    (
        prop_oneof![Just(FORMAT_VERSION), any::<u32>()],
        prop_oneof![Just("AES-256-GCM".to_string()), "[A-Z0-9-]{0,12}"],
        prop_oneof![select(vec![0u32, 1, 16, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, u32::MAX]), 1u32..100_000,],
        arb_kms_key(),
        prop_oneof![b64(0..20), Just(String::new())],
        prop_oneof![Just(None), b64(0..16).prop_map(Some)],
    )
        .prop_map(|(version, algorithm, chunk_size, kms_key, wrapped_key, prefix)| {
            let mut h = Header::new(&kms_key, b"wrapped", 1);
            h.version = version;
            h.algorithm = algorithm;
            h.chunk_size = chunk_size;
            h.wrapped_key = wrapped_key;
            if let Some(p) = prefix {
                h.nonce_prefix = p;
            }
            let json = serde_json::to_vec(&h).unwrap();
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&(json.len() as u32).to_be_bytes());
            v.extend_from_slice(&json);
            (h, v)
        })
}

proptest! {
    #![proptest_config(cases(512))]

    /// Arbitrary bytes never panic the header parser or a whole-envelope open, and a random key
    /// never opens them.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in arb_envelope_like_bytes(), sizes in arb_sizes()) {
        let mut r = short_reads(&bytes[..], &sizes);
        if let Ok(h) = read_header(&mut r) {
            prop_assert_eq!(h.version, FORMAT_VERSION);
            prop_assert!(h.chunk_size >= 1 && h.chunk_size <= MAX_CHUNK_SIZE);
        }
        prop_assert!(open_all(&bytes, &generate_data_key()).is_err());
    }

    /// Headers with hostile field values are accepted only when every field is valid, and then
    /// read back exactly; decryption of random chunks under them fails cleanly.
    #[test]
    fn hostile_headers_are_refused_or_read_exactly(
        (h, mut bytes) in arb_header_bytes(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let r = read_header(&mut &bytes[..]);
        let prefix_ok = B64.decode(&h.nonce_prefix).is_ok_and(|p| p.len() == 7);
        let valid = h.version == FORMAT_VERSION
            && h.algorithm == "AES-256-GCM"
            && (1..=MAX_CHUNK_SIZE).contains(&h.chunk_size)
            && prefix_ok;
        match &r {
            Ok(back) => {
                prop_assert!(valid, "accepted {:?}", h);
                prop_assert_eq!(back, &h);
            }
            Err(e) => {
                prop_assert!(!valid, "refused a valid header {:?}: {}", h, e);
                prop_assert!(matches!(e, EnvelopeError::BadHeader(_) | EnvelopeError::UnsupportedVersion(_)), "{e}");
            }
        }
        if valid && h.chunk_size <= 100_000 {
            bytes.extend_from_slice(&body);
            prop_assert!(open_all(&bytes, &generate_data_key()).is_err());
        }
    }
}
