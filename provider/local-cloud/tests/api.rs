//! The local cloud over real HTTP: what Google accepts, it accepts; what Google refuses, it refuses
//! with Google's status codes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dcr_local_cloud::{LocalCloud, LocalCloudConfig};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PROJECT: &str = "test-project";

fn state_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dcr-local-cloud-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn start(dir: &std::path::Path) -> LocalCloud {
    LocalCloud::start(LocalCloudConfig {
        state_dir: dir.to_path_buf(),
        project: PROJECT.into(),
        admin_principal: "user:owner@example.com".into(),
        request_log: None,
        federated_token_ttl: None,
    })
    .await
    .expect("local cloud starts")
}

struct Api {
    base: String,
    token: String,
    http: Client,
}

impl Api {
    fn new(cloud: &LocalCloud, token: String) -> Api {
        Api { base: cloud.endpoint(), token, http: Client::new() }
    }

    /// One chunk of a resumable upload: `body` sent to `session` with `Content-Range: range`.
    /// Opens a resumable upload session for `bucket/name` and returns its URI.
    async fn start_resumable(&self, bucket: &str, name: &str) -> String {
        let init = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={name}", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), 200);
        init.headers()["location"].to_str().unwrap().to_string()
    }
    async fn put_range(&self, session: &str, range: impl AsRef<str>, body: &[u8]) -> reqwest::Response {
        self.http
            .put(session)
            .bearer_auth(&self.token)
            .header("content-range", range.as_ref())
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_follow_googles_rules() {
    let dir = state_dir("buckets");
    let cloud = start(&dir).await;
    let api = Api::new(&cloud, cloud.admin_token());
    let (s, b) = api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "data-1", "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"}})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["location"], "US");
    assert_eq!(b["iamConfiguration"]["publicAccessPrevention"], "enforced");
    let (s, b) = api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "data-1"})).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["errors"][0]["reason"], "conflict");
    let (s, _) = api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "Bad_Name"})).await;
    assert_eq!(s, 400);
    let (s, _) = api.post("/storage/v1/b", json!({"name": "no-project"})).await;
    assert_eq!(s, 400);
    let (s, b) =
        api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "typo-field", "lables": {}})).await;
    assert_eq!(s, 400, "unknown fields are refused: {b}");

    // A non-empty bucket cannot be deleted.
    let up = api
        .http
        .post(format!("{}/upload/storage/v1/b/data-1/o?uploadType=media&name=a%2Fb.txt", api.base))
        .bearer_auth(&api.token)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let (s, b) = api.call(reqwest::Method::DELETE, "/storage/v1/b/data-1", None).await;
    assert_eq!(s, 409, "{b}");
    let (s, _) = api.call(reqwest::Method::DELETE, "/storage/v1/b/data-1/o/a%2Fb.txt", None).await;
    assert_eq!(s, 204);
    let (s, _) = api.call(reqwest::Method::DELETE, "/storage/v1/b/data-1", None).await;
    assert_eq!(s, 204);
    let (s, b) = api.get("/storage/v1/b/data-1").await;
    assert_eq!(s, 404, "{b}");
    cloud.shutdown().await;
}

/// `(crc32c, md5Hash)` of `data`, base64 as Cloud Storage reports them, computed here directly.
fn gcs_hashes(data: &[u8]) -> (String, String) {
    use base64::Engine;
    use md5::Digest;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let crc = b64(&crc32c::crc32c(data).to_be_bytes());
    let md5 = b64(&md5::Md5::digest(data));
    (crc, md5)
}

#[tokio::test(flavor = "multi_thread")]
async fn resumable_uploads_stream_in_chunks_and_respect_preconditions() {
    let dir = state_dir("uploads");
    let cloud = start(&dir).await;
    let api = Api::new(&cloud, cloud.admin_token());
    api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "uploads"})).await;
    let init = api
        .http
        .post(format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=resumable&name=big.bin&ifGenerationMatch=0",
            api.base
        ))
        .bearer_auth(&api.token)
        .json(&json!({"name": "big.bin", "contentType": "application/octet-stream", "metadata": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["location"].to_str().unwrap().to_string();
    let chunk = 256 * 1024;
    let data: Vec<u8> = (0..(2 * chunk + 1000)).map(|i| (i % 251) as u8).collect();
    // A non-final chunk that is not a multiple of 256 KiB is refused.
    let bad = api.put_range(&session, "bytes 0-99/*", &data[..100]).await;
    assert_eq!(bad.status(), 400);
    let r = api.put_range(&session, format!("bytes 0-{}/*", chunk - 1), &data[..chunk]).await;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], format!("bytes=0-{}", chunk - 1).as_str());
    let r = api.put_range(&session, format!("bytes {chunk}-{}/*", 2 * chunk - 1), &data[chunk..2 * chunk]).await;
    assert_eq!(r.status(), 308);
    let total = data.len();
    let r = api.put_range(&session, format!("bytes {}-{}/{total}", 2 * chunk, total - 1), &data[2 * chunk..]).await;
    assert_eq!(r.status(), 200);
    let obj: Value = r.json().await.unwrap();
    assert_eq!(obj["size"], total.to_string());
    assert_eq!(obj["metadata"]["k"], "v");
    // Hashed as the chunks arrived: the same CRC32C and MD5 as of the whole.
    let reported = |o: &Value| (o["crc32c"].as_str().unwrap().to_string(), o["md5Hash"].as_str().unwrap().to_string());
    assert_eq!(reported(&obj), gcs_hashes(&data));

    // A chunk whose body is shorter than its Content-Range is dropped; the session goes on from
    // where it was, and the object's hashes still cover exactly its bytes.
    let again = api.start_resumable("uploads", "again.bin").await;
    assert_eq!(api.put_range(&again, format!("bytes 0-{}/*", chunk - 1), &data[..chunk]).await.status(), 308);
    let short = api.put_range(&again, format!("bytes {chunk}-{}/*", 2 * chunk - 1), &data[chunk..chunk + 10]).await;
    assert_eq!(short.status(), 400);
    let r = api.put_range(&again, format!("bytes {chunk}-{}/{total}", total - 1), &data[chunk..]).await;
    assert_eq!(r.status(), 200);
    let again_obj: Value = r.json().await.unwrap();
    assert_eq!(reported(&again_obj), gcs_hashes(&data));
    assert_eq!(api.call(reqwest::Method::DELETE, "/storage/v1/b/uploads/o/again.bin", None).await.0, 204);
    let got = api
        .http
        .get(format!("{}/storage/v1/b/uploads/o/big.bin?alt=media", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.to_vec(), data);

    // ifGenerationMatch=0 now fails: the object exists.
    let r = api
        .http
        .post(format!("{}/upload/storage/v1/b/uploads/o?uploadType=media&name=big.bin&ifGenerationMatch=0", api.base))
        .bearer_auth(&api.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    // The right generation succeeds.
    let gen_ = obj["generation"].as_str().unwrap();
    let r = api
        .http
        .post(format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=media&name=big.bin&ifGenerationMatch={gen_}",
            api.base
        ))
        .bearer_auth(&api.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A session its client abandoned after one chunk goes with the bucket, file and all.
    let abandoned = api.start_resumable("uploads", "cut.bin").await;
    let r = api.put_range(&abandoned, format!("bytes 0-{}/*", chunk - 1), &data[..chunk]).await;
    assert_eq!(r.status(), 308);
    assert_eq!(std::fs::read_dir(dir.join("uploads")).unwrap().count(), 1);
    assert_eq!(api.call(reqwest::Method::DELETE, "/storage/v1/b/uploads/o/big.bin", None).await.0, 204);
    assert_eq!(api.call(reqwest::Method::DELETE, "/storage/v1/b/uploads", None).await.0, 204);
    assert_eq!(std::fs::read_dir(dir.join("uploads")).unwrap().count(), 0, "the abandoned session's file is left");
    let r = api.http.put(&abandoned).bearer_auth(&api.token).header("content-range", "bytes */*").send().await.unwrap();
    assert_eq!(r.status(), 404);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_iam_decides_access_and_guards_with_etags() {
    let dir = state_dir("iam");
    let cloud = start(&dir).await;
    let admin = Api::new(&cloud, cloud.admin_token());
    let bob = Api::new(&cloud, cloud.mint_token("user:bob@example.com", Duration::from_secs(600)).unwrap());
    admin
        .post(
            &format!("/storage/v1/b?project={PROJECT}"),
            json!({"name": "shared", "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}}}),
        )
        .await;
    admin
        .http
        .post(format!("{}/upload/storage/v1/b/shared/o?uploadType=media&name=x.csv", admin.base))
        .bearer_auth(&admin.token)
        .body("a,b\n")
        .send()
        .await
        .unwrap();

    let (s, b) = bob.get("/storage/v1/b/shared/o/x.csv").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["errors"][0]["reason"], "forbidden");

    let (s, mut policy) = admin.get("/storage/v1/b/shared/iam").await;
    assert_eq!(s, 200);
    let stale = policy["etag"].clone();
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/storage.objectViewer", "members": ["user:bob@example.com"]}));
    let (s, newp) = admin.call(reqwest::Method::PUT, "/storage/v1/b/shared/iam", Some(policy.clone())).await;
    assert_eq!(s, 200, "{newp}");
    assert_ne!(newp["etag"], stale);
    // The same write with the old etag is refused.
    let (s, _) = admin.call(reqwest::Method::PUT, "/storage/v1/b/shared/iam", Some(policy)).await;
    assert_eq!(s, 412);
    // An unknown role or a malformed member is refused.
    let (s, _) = admin
        .call(
            reqwest::Method::PUT,
            "/storage/v1/b/shared/iam",
            Some(json!({"bindings": [{"role": "roles/storage.nope", "members": ["user:bob@example.com"]}]})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = admin
        .call(
            reqwest::Method::PUT,
            "/storage/v1/b/shared/iam",
            Some(json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["bob@example.com"]}]})),
        )
        .await;
    assert_eq!(s, 400);

    let (s, _) = bob.get("/storage/v1/b/shared/o/x.csv").await;
    assert_eq!(s, 200);
    // Reading is not deleting.
    let (s, _) = bob.call(reqwest::Method::DELETE, "/storage/v1/b/shared/o/x.csv", None).await;
    assert_eq!(s, 403);
    // No token, or a made-up one: 401.
    let anon = Api::new(&cloud, "made-up".into());
    assert_eq!(anon.get("/storage/v1/b/shared").await.0, 401);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_encrypts_decrypts_and_enforces_iam_and_key_state() {
    let dir = state_dir("kms");
    let cloud = start(&dir).await;
    let admin = Api::new(&cloud, cloud.admin_token());
    let eve = Api::new(&cloud, cloud.mint_token("user:eve@example.com", Duration::from_secs(600)).unwrap());
    let parent = format!("/cloudkms/v1/projects/{PROJECT}/locations/global");
    let (s, b) = admin.post(&format!("{parent}/keyRings?keyRingId=ring"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = admin.post(&format!("{parent}/keyRings?keyRingId=ring"), json!({})).await;
    assert_eq!((s, b["error"]["status"].as_str()), (StatusCode::CONFLICT, Some("ALREADY_EXISTS")));
    let (s, _) = admin.post(&format!("{parent}/keyRings?keyRingId=bad%20id"), json!({})).await;
    assert_eq!(s, 400);
    let (s, key) = admin
        .post(&format!("{parent}/keyRings/ring/cryptoKeys?cryptoKeyId=k"), json!({"purpose": "ENCRYPT_DECRYPT"}))
        .await;
    assert_eq!(s, 200, "{key}");
    assert_eq!(key["primary"]["state"], "ENABLED");
    let k = format!("{parent}/keyRings/ring/cryptoKeys/k");

    let pt = B64.encode(b"a data key");
    let aad = B64.encode(b"context");
    let (s, enc) =
        admin.post(&format!("{k}:encrypt"), json!({"plaintext": pt, "additionalAuthenticatedData": aad})).await;
    assert_eq!(s, 200, "{enc}");
    let ct = enc["ciphertext"].clone();
    let (s, dec) =
        admin.post(&format!("{k}:decrypt"), json!({"ciphertext": ct, "additionalAuthenticatedData": aad})).await;
    assert_eq!((s, dec["plaintext"].clone()), (StatusCode::OK, json!(pt)));
    let (s, _) = admin
        .post(&format!("{k}:decrypt"), json!({"ciphertext": ct, "additionalAuthenticatedData": B64.encode(b"other")}))
        .await;
    assert_eq!(s, 400);

    // Eve may not decrypt, until granted the decrypter role on the key.
    let (s, b) = eve.post(&format!("{k}:decrypt"), json!({"ciphertext": ct, "additionalAuthenticatedData": aad})).await;
    assert_eq!((s, b["error"]["status"].as_str()), (StatusCode::FORBIDDEN, Some("PERMISSION_DENIED")));
    let (_, p) = admin.get(&format!("{k}:getIamPolicy?options.requestedPolicyVersion=3")).await;
    let policy = json!({"etag": p["etag"], "bindings": [{"role": "roles/cloudkms.cryptoKeyDecrypter", "members": ["user:eve@example.com"]}]});
    let (s, b) =
        admin.post(&format!("{k}:setIamPolicy"), json!({"policy": policy, "updateMask": "bindings,etag"})).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = admin.post(&format!("{k}:setIamPolicy"), json!({"policy": policy})).await;
    assert_eq!(s, 409, "a stale etag is ABORTED");
    let (s, _) = eve.post(&format!("{k}:decrypt"), json!({"ciphertext": ct, "additionalAuthenticatedData": aad})).await;
    assert_eq!(s, 200);
    let (s, _) = eve.post(&format!("{k}:encrypt"), json!({"plaintext": pt})).await;
    assert_eq!(s, 403, "decrypter is not encrypter");

    // Once the version is scheduled for destruction, nothing decrypts with it.
    let (s, v) = admin.post(&format!("{k}/cryptoKeyVersions/1:destroy"), json!({})).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("DESTROY_SCHEDULED")));
    let (s, b) =
        admin.post(&format!("{k}:decrypt"), json!({"ciphertext": ct, "additionalAuthenticatedData": aad})).await;
    assert_eq!((s, b["error"]["status"].as_str()), (StatusCode::BAD_REQUEST, Some("FAILED_PRECONDITION")));
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_state_directory() {
    let dir = state_dir("shared");
    let a = start(&dir).await;
    let b = start(&dir).await;
    let api_a = Api::new(&a, a.admin_token());
    let api_b = Api::new(&b, a.admin_token()); // a token minted by one is honoured by the other
    let (s, _) = api_a.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": "from-a"})).await;
    assert_eq!(s, 200);
    let (s, _) = api_b.get("/storage/v1/b/from-a").await;
    assert_eq!(s, 200);
    // Concurrent creates from both: each name is created exactly once.
    let mut handles = Vec::new();
    for i in 0..8 {
        let api = if i % 2 == 0 { Api::new(&a, a.admin_token()) } else { Api::new(&b, b.admin_token()) };
        handles.push(tokio::spawn(async move {
            api.post(&format!("/storage/v1/b?project={PROJECT}"), json!({"name": format!("race-{}", i / 2)})).await.0
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap().as_u16() {
            200 => ok += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 4);
    a.shutdown().await;
    b.shutdown().await;
}
