//! Cloud Storage JSON API: buckets, bucket IAM, objects (resumable streaming upload, streaming
//! download), following the storage.v1 discovery document.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::GcpError;
use crate::iam::{IamResource, Policy};
use crate::retry::Idempotency::{Idempotent, NotIdempotent};
use crate::transport::{Transport, decode_json, segment};

/// Bytes per resumable-upload request: a multiple of 256 KiB, as the API requires for every chunk
/// but the last; large enough to amortise a round trip, small enough to keep memory flat.
pub const UPLOAD_CHUNK: usize = 64 * 256 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam_configuration: Option<IamConfiguration>,
    #[serde(skip_serializing)]
    pub metageneration: Option<String>,
    #[serde(skip_serializing)]
    pub time_created: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IamConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uniform_bucket_level_access: Option<UniformBucketLevelAccess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_access_prevention: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UniformBucketLevelAccess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing)]
    pub locked_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing)]
    pub generation: Option<String>,
    #[serde(skip_serializing)]
    pub size: Option<String>,
    #[serde(skip_serializing)]
    pub md5_hash: Option<String>,
    #[serde(skip_serializing)]
    pub crc32c: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<Object>,
    next_page_token: Option<String>,
}

#[derive(Clone)]
pub struct StorageClient {
    t: Arc<Transport>,
    base: String,
    upload_base: String,
}

impl StorageClient {
    pub fn new(t: Arc<Transport>, base: &str, upload_base: &str) -> StorageClient {
        StorageClient { t, base: base.to_string(), upload_base: upload_base.to_string() }
    }

    /// Creates a bucket. Not retried on 5xx: a lost success would come back as 409.
    pub async fn insert_bucket(&self, project: &str, bucket: &Bucket) -> Result<Bucket, GcpError> {
        let url = format!("{}b", self.base);
        self.t
            .json(&format!("create bucket {:?}", bucket.name), NotIdempotent, |c| {
                c.post(&url).query(&[("project", project)]).json(bucket)
            })
            .await
    }

    pub async fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, GcpError> {
        let url = format!("{}b/{}", self.base, segment(name));
        self.t.json_opt(&format!("read bucket {name:?}"), |c| c.get(&url)).await
    }

    pub async fn patch_bucket(&self, name: &str, patch: &Bucket) -> Result<Bucket, GcpError> {
        let url = format!("{}b/{}", self.base, segment(name));
        let mut body = serde_json::to_value(patch)
            .map_err(|e| GcpError::Decode { operation: format!("update bucket {name:?}"), detail: e.to_string() })?;
        if let Some(o) = body.as_object_mut() {
            o.remove("name");
        }
        self.t.json(&format!("update bucket {name:?}"), Idempotent, |c| c.patch(&url).json(&body)).await
    }

    /// Deletes an empty bucket; a bucket that is already gone is not an error.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), GcpError> {
        let url = format!("{}b/{}", self.base, segment(name));
        match self.t.send(&format!("delete bucket {name:?}"), Idempotent, |c| c.delete(&url)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn bucket_iam(&self, bucket: &str) -> BucketIam {
        BucketIam { client: self.clone(), bucket: bucket.to_string() }
    }

    /// Uploads everything `source` yields as object `name`, streaming it in [`UPLOAD_CHUNK`]
    /// pieces through a resumable upload session, so memory stays flat whatever the size.
    /// `if_generation_match` guards the write (`Some(0)`: only if the object does not exist).
    pub async fn upload_object<R: Read + Send + 'static>(
        &self,
        bucket: &str,
        object: &Object,
        source: R,
        if_generation_match: Option<i64>,
    ) -> Result<Object, GcpError> {
        let op = format!("upload gs://{bucket}/{}", object.name);
        let init_url = format!("{}b/{}/o", self.upload_base, segment(bucket));
        let mut query = vec![("uploadType", "resumable".to_string()), ("name", object.name.clone())];
        if let Some(g) = if_generation_match {
            query.push(("ifGenerationMatch", g.to_string()));
        }
        let init = self.t.send(&op, NotIdempotent, |c| c.post(&init_url).query(&query).json(object)).await?;
        let session = init
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| GcpError::Decode { operation: op.clone(), detail: "no Location header".into() })?
            .to_string();

        let mut reader = ChunkReader::spawn(Box::new(source));
        let mut offset: u64 = 0;
        loop {
            let (chunk, last) = reader.next_chunk(&op).await?;
            let chunk = Bytes::from(chunk);
            let mut sent = 0usize;
            loop {
                let part = chunk.slice(sent..);
                let start = offset + sent as u64;
                let end = offset + chunk.len() as u64; // exclusive
                let total = if last { end.to_string() } else { "*".to_string() };
                let range = if part.is_empty() {
                    format!("bytes */{total}")
                } else {
                    format!("bytes {start}-{}/{total}", end - 1)
                };
                let resp = self
                    .t
                    .send(&op, Idempotent, |c| {
                        c.put(&session).header(reqwest::header::CONTENT_RANGE, &range).body(part.clone())
                    })
                    .await?;
                if resp.status() == StatusCode::from_u16(308).expect("308") {
                    // The server says how much it has; resend whatever it does not.
                    let persisted = resp
                        .headers()
                        .get(reqwest::header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_range_end)
                        .map(|e| e + 1)
                        .unwrap_or(0);
                    if persisted >= end {
                        if last {
                            return Err(GcpError::Decode {
                                operation: op,
                                detail: "upload session did not finalise after the last chunk".into(),
                            });
                        }
                        break;
                    }
                    if persisted < offset {
                        return Err(GcpError::Decode {
                            operation: op,
                            detail: format!("upload session lost data (has {persisted} bytes, sent {end})"),
                        });
                    }
                    sent = (persisted - offset) as usize;
                    continue;
                }
                return decode_json(&op, resp).await;
            }
            offset += chunk.len() as u64;
        }
    }

    pub async fn get_object(&self, bucket: &str, name: &str) -> Result<Option<Object>, GcpError> {
        let url = format!("{}b/{}/o/{}", self.base, segment(bucket), segment(name));
        self.t.json_opt(&format!("read gs://{bucket}/{name}"), |c| c.get(&url)).await
    }

    /// Streams the object's bytes to `sink`, one network chunk at a time.
    pub async fn download_object(
        &self,
        bucket: &str,
        name: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), GcpError> {
        let op = format!("download gs://{bucket}/{name}");
        let mut stream = self.open_download(bucket, name, None).await?;
        while let Some(chunk) = stream.next().await {
            sink(&chunk?).map_err(|e| GcpError::Io { operation: op.clone(), source: e })?;
        }
        Ok(())
    }

    /// A small object's bytes, whole (a document, a manifest, a token); stream large ones with
    /// [`download_object`](Self::download_object).
    pub async fn read_object(&self, bucket: &str, name: &str) -> Result<Vec<u8>, GcpError> {
        let mut bytes = Vec::new();
        self.download_object(bucket, name, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(bytes)
    }

    /// The object's bytes as a stream of network chunks, for callers that pace the download
    /// themselves. `generation` pins one version of the object.
    pub async fn open_download(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, GcpError>> + use<>, GcpError> {
        let op = format!("download gs://{bucket}/{name}");
        let url = format!("{}b/{}/o/{}", self.base, segment(bucket), segment(name));
        let mut query = vec![("alt", "media".to_string())];
        if let Some(g) = generation {
            query.push(("generation", g.to_string()));
        }
        let resp = self.t.send(&op, Idempotent, |c| c.get(&url).query(&query)).await?;
        Ok(resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| GcpError::Network { operation: op.clone(), url: url.clone(), source: e })
        }))
    }

    /// Deletes an object; one that is already gone is not an error.
    pub async fn delete_object(&self, bucket: &str, name: &str) -> Result<(), GcpError> {
        let url = format!("{}b/{}/o/{}", self.base, segment(bucket), segment(name));
        match self.t.send(&format!("delete gs://{bucket}/{name}"), Idempotent, |c| c.delete(&url)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix`, following pagination.
    pub async fn list_objects(&self, bucket: &str, prefix: Option<&str>) -> Result<Vec<Object>, GcpError> {
        let url = format!("{}b/{}/o", self.base, segment(bucket));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(p) = prefix {
                q.push(("prefix", p.to_string()));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page: ObjectList =
                self.t.json(&format!("list gs://{bucket}"), Idempotent, |c| c.get(&url).query(&q)).await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// `Range: bytes=0-N` → N.
fn parse_range_end(v: &str) -> Option<u64> {
    v.strip_prefix("bytes=")?.split('-').nth(1)?.trim().parse().ok()
}

/// Reads a blocking source in upload-sized chunks on the blocking pool, one chunk ahead of the
/// upload (so reading, encrypting and hashing overlap with the network), and one byte ahead within
/// the chunk, so the last chunk is known to be last. At most three chunks are in memory.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<(Vec<u8>, bool)>>,
}

impl ChunkReader {
    fn spawn(mut source: Box<dyn Read + Send>) -> ChunkReader {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::task::spawn_blocking(move || {
            let mut carry: Option<u8> = None;
            loop {
                let mut buf = Vec::with_capacity(UPLOAD_CHUNK + 1);
                buf.extend(carry.take());
                let want = (UPLOAD_CHUNK + 1 - buf.len()) as u64;
                let read = (&mut source).take(want).read_to_end(&mut buf);
                let item = read.map(|_| {
                    let last = buf.len() <= UPLOAD_CHUNK;
                    if !last {
                        carry = buf.pop();
                    }
                    (buf, last)
                });
                let stop = !matches!(item, Ok((_, false)));
                // The receiver is gone when the upload failed: stop reading.
                if tx.blocking_send(item).is_err() || stop {
                    return;
                }
            }
        });
        ChunkReader { chunks: rx }
    }

    async fn next_chunk(&mut self, op: &str) -> Result<(Vec<u8>, bool), GcpError> {
        match self.chunks.recv().await {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(GcpError::Io { operation: op.into(), source: e }),
            None => Err(GcpError::Io { operation: op.into(), source: std::io::Error::other("source reader stopped") }),
        }
    }
}

/// A bucket's IAM policy (`GET`/`PUT b/{bucket}/iam`).
pub struct BucketIam {
    client: StorageClient,
    bucket: String,
}

#[async_trait]
impl IamResource for BucketIam {
    fn describe(&self) -> String {
        format!("bucket {:?}", self.bucket)
    }
    async fn get_policy(&self) -> Result<Policy, GcpError> {
        let url = format!("{}b/{}/iam", self.client.base, segment(&self.bucket));
        self.client
            .t
            .json(&format!("read IAM policy of bucket {:?}", self.bucket), Idempotent, |c| {
                c.get(&url).query(&[("optionsRequestedPolicyVersion", "3")])
            })
            .await
    }
    async fn set_policy(&self, policy: &Policy) -> Result<Policy, GcpError> {
        let url = format!("{}b/{}/iam", self.client.base, segment(&self.bucket));
        // Guarded by the etag, so a retry can only apply the same change or fail with 412.
        self.client
            .t
            .json(&format!("set IAM policy of bucket {:?}", self.bucket), Idempotent, |c| c.put(&url).json(policy))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header_parses() {
        assert_eq!(parse_range_end("bytes=0-262143"), Some(262143));
        assert_eq!(parse_range_end("garbage"), None);
    }

    #[test]
    fn upload_chunk_is_a_multiple_of_256_kib() {
        assert_eq!(UPLOAD_CHUNK % (256 * 1024), 0);
    }

    #[tokio::test]
    async fn chunk_reader_marks_only_the_final_chunk_last() {
        for len in [0usize, 1, UPLOAD_CHUNK, UPLOAD_CHUNK + 1, 2 * UPLOAD_CHUNK] {
            let data = vec![7u8; len];
            let mut r = ChunkReader::spawn(Box::new(std::io::Cursor::new(data)));
            let mut total = 0;
            loop {
                let (c, last) = r.next_chunk("t").await.unwrap();
                assert!(c.len() <= UPLOAD_CHUNK);
                total += c.len();
                if last {
                    break;
                }
                assert_eq!(c.len(), UPLOAD_CHUNK, "non-final chunks are full (len {len})");
            }
            assert_eq!(total, len);
        }
    }
}
