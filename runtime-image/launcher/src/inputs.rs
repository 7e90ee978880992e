//! Getting one input: exchange the attestation token at the input's policy, read the policy
//! document, and stream the dataset's envelope through decryption into memory-backed storage.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dcr_attestation::policy::{OutputRules, PolicyDocument};
use dcr_attestation::workload::{InputRecord, WorkloadInput, split_gs_uri};
use dcr_gcp::auth::StaticToken;
use dcr_gcp::kms::KmsClient;
use dcr_gcp::retry::RetryPolicy;
use dcr_gcp::storage::StorageClient;
use dcr_gcp::sts::StsClient;
use dcr_gcp::{Endpoints, Transport};
use futures::StreamExt;

use crate::error::LauncherError;
use crate::propagation::{self, Call};

/// The envelope header is at most this far into the object (magic, length, 64 KiB of JSON).
const MAX_HEADER_BYTES: usize = 12 + 64 * 1024;
/// Network chunks in flight between the download and the decryption thread.
const PIPE_DEPTH: usize = 8;

/// An input on disk (tmpfs), with what the output manifest records and the rules it brings.
pub struct FetchedInput {
    pub record: InputRecord,
    pub rules: OutputRules,
    pub path: PathBuf,
}

/// Storage and KMS clients acting with one federated token.
pub fn clients_for(token: &str, endpoints: &Endpoints) -> Result<(StorageClient, KmsClient), String> {
    let t =
        Transport::new(Arc::new(StaticToken(token.to_string())), RetryPolicy::default()).map_err(|e| e.to_string())?;
    let t = Arc::new(t);
    Ok((
        StorageClient::new(t.clone(), &endpoints.storage, &endpoints.storage_upload),
        KmsClient::new(t, &endpoints.kms),
    ))
}

/// Fetches one input. `patience` bounds the wait for IAM propagation on the exchange and on the
/// first use of each granted resource (the policy document, the data object, the key).
pub async fn fetch(
    name: &str,
    input: &WorkloadInput,
    attestation_token: &str,
    sts: &StsClient,
    endpoints: &Endpoints,
    inputs_dir: &Path,
    patience: Duration,
) -> Result<FetchedInput, LauncherError> {
    let fail = |message: String| LauncherError::Input { input: name.into(), policy: input.policy.clone(), message };
    let what = |step: &str| format!("input {name:?}: {step}");
    let federated = propagation::retry(&what("token exchange"), Call::Exchange, patience, || {
        sts.exchange(&input.audience, attestation_token)
    })
    .await
    .map_err(|e| {
        fail(format!("the policy's workload identity provider refused this workload's attestation token: {e}"))
    })?;
    let (storage, kms) = clients_for(&federated.access_token, endpoints).map_err(fail)?;

    let (pbucket, pobject) = split_gs_uri(&input.policy_uri)
        .ok_or_else(|| fail(format!("policy_uri {:?} is not gs://", input.policy_uri)))?;
    let policy_bytes = propagation::retry(&what("read the policy document"), Call::FirstUse, patience, || {
        storage.read_object(pbucket, pobject)
    })
    .await
    .map_err(|e| fail(format!("cannot read the policy document: {e}")))?;
    let policy = PolicyDocument::from_bytes(&policy_bytes).map_err(fail)?;
    if policy.audience != input.audience {
        return Err(fail(format!(
            "the policy document at {} is for {}, not {}",
            input.policy_uri, policy.audience, input.audience
        )));
    }
    if !policy.datasets.iter().any(|d| d.id == input.dataset) {
        return Err(fail(format!("the policy does not cover dataset {}", input.dataset)));
    }

    let (bucket, object) = split_gs_uri(&input.object_uri)
        .ok_or_else(|| fail(format!("object_uri {:?} is not gs://", input.object_uri)))?;
    let meta = propagation::retry(&what("read the data object"), Call::FirstUse, patience, || {
        storage.get_object(bucket, object)
    })
    .await
    .map_err(|e| fail(format!("cannot read {}: {e}", input.object_uri)))?
    .ok_or_else(|| fail(format!("{} does not exist", input.object_uri)))?;
    let generation = meta.generation.unwrap_or_default();
    let path = inputs_dir.join(format!("{name}.csv"));
    let unwrap = Unwrap { kms: &kms, what: what("unwrap the data key"), patience };
    decrypt_into(&storage, &unwrap, bucket, object, &generation, &path).await.map_err(fail)?;

    Ok(FetchedInput {
        record: InputRecord {
            name: name.to_string(),
            dataset: input.dataset.clone(),
            object_uri: input.object_uri.clone(),
            generation,
            policy: input.policy.clone(),
            policy_version: policy.version,
            policy_uri: input.policy_uri.clone(),
            policy_sha256: dcr_attestation::workload::hex_sha256(&policy_bytes),
            readers: policy.output.readers.clone(),
        },
        rules: policy.output,
        path,
    })
}

/// Streams `gs://bucket/object` (at `generation`) through the envelope decryption into `path`.
/// The header is read first on the async side so the data key is unwrapped before the pipe
/// to the decryption thread fills; memory holds a few network chunks and one envelope chunk.
/// Unwrapping the data key: the first use of the key's grant.
struct Unwrap<'a> {
    kms: &'a KmsClient,
    what: String,
    patience: Duration,
}

async fn decrypt_into(
    storage: &StorageClient,
    unwrap: &Unwrap<'_>,
    bucket: &str,
    object: &str,
    generation: &str,
    path: &Path,
) -> Result<(), String> {
    let generation = (!generation.is_empty()).then_some(generation);
    let mut stream = storage
        .open_download(bucket, object, generation)
        .await
        .map_err(|e| format!("cannot download gs://{bucket}/{object}: {e}"))?;
    let mut head = Vec::new();
    let header = loop {
        match dcr_envelope::read_header(&mut &head[..]) {
            Ok(h) => break h,
            // Not enough bytes yet.
            Err(dcr_envelope::EnvelopeError::Truncated) => {}
            Err(dcr_envelope::EnvelopeError::BadMagic) if head.len() < dcr_envelope::MAGIC.len() => {}
            Err(e) => return Err(format!("gs://{bucket}/{object} is not a readable dcr envelope: {e}")),
        }
        if head.len() > MAX_HEADER_BYTES {
            return Err(format!("gs://{bucket}/{object} is not a dcr envelope (no header in the first bytes)"));
        }
        match stream.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(|e| e.to_string())?),
            None => return Err(format!("gs://{bucket}/{object} ends inside the envelope header")),
        }
    };
    let wrapped = header.wrapped_key_bytes().map_err(|e| e.to_string())?;
    let aad = dcr_envelope::wrap_aad(bucket, object);
    let key = propagation::retry(&unwrap.what, Call::FirstUse, unwrap.patience, || {
        unwrap.kms.decrypt(&header.kms_key, &wrapped, Some(&aad))
    })
    .await
    .map_err(|e| format!("cannot unwrap the data key with {}: {e}", header.kms_key))?;

    // The header's own bytes are consumed again by the decryption thread's reader.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(PIPE_DEPTH);
    let path_owned = path.to_path_buf();
    let decrypt = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut reader = ChannelReader { rx, buf: head, pos: 0 };
        let header = dcr_envelope::read_header(&mut reader).map_err(|e| e.to_string())?;
        let mut plain = dcr_envelope::DecryptingReader::new(reader, &key, &header).map_err(|e| e.to_string())?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path_owned)
            .map_err(|e| format!("cannot create {}: {e}", path_owned.display()))?;
        let n = std::io::copy(&mut plain, &mut file).map_err(|e| {
            let _ = std::fs::remove_file(&path_owned);
            format!("decryption failed: {}", dcr_envelope::unwrap_io(e))
        })?;
        file.flush().map_err(|e| e.to_string())?;
        Ok(n)
    });
    let mut download_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(c.to_vec()).await.is_err() {
                    break; // the decryption side stopped; its error says why
                }
            }
            Err(e) => {
                download_error = Some(e.to_string());
                break;
            }
        }
    }
    drop(tx);
    let decrypted = decrypt.await.map_err(|e| format!("decryption thread failed: {e}"))?;
    if let Some(e) = download_error {
        let _ = std::fs::remove_file(path);
        return Err(format!("download of gs://{bucket}/{object} failed: {e}"));
    }
    decrypted.map(|_| ())
}

/// A blocking reader over the chunks the async download sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
