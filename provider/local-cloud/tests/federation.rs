//! Workload identity federation over real HTTP: pools and providers with Google's id rules, soft
//! delete and long-running operations; STS exchanging attestation tokens from the simulated issuer
//! for federated tokens that Storage and KMS honour through principal-set bindings.

use dcr_attestation::claims::{AttestationClaims, LOCAL_ISSUER, STS_AUDIENCE, SimulatedLaunch};
use dcr_local_cloud::{LocalCloud, LocalCloudConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const PROJECT: &str = "fed-project";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

async fn start(tag: &str) -> (LocalCloud, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("dcr-local-cloud-fed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cloud = LocalCloud::start(LocalCloudConfig {
        state_dir: dir.clone(),
        project: PROJECT.into(),
        admin_principal: "user:owner@example.com".into(),
        request_log: None,
        federated_token_ttl: None,
    })
    .await
    .expect("local cloud starts");
    (cloud, dir)
}

struct Api {
    base: String,
    http: Client,
}

impl Api {
    async fn call(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null))
    }

    /// Runs a mutation, follows its operation to the end, and reads the resource back, as gcloud
    /// does: Google's identity pool operations finish with no `response`
    /// (`googlecloudsdk/command_lib/iam/identity_pool_waiter.py`), and the resource's name is the
    /// operation's without `/operations/ID`.
    async fn op(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, op) = self.call(Some(token), method, path, body).await;
        if s != 200 {
            return (s, op);
        }
        assert_eq!(op["done"], false, "the local cloud makes clients poll: {op}");
        let op_name = op["name"].as_str().unwrap();
        let (s, done) = self.call(Some(token), Method::GET, &format!("/iam/v1/{op_name}"), None).await;
        assert_eq!(s, 200, "{done}");
        assert_eq!(done["done"], true);
        assert!(done.get("response").is_none(), "Google leaves an identity pool operation's response empty: {done}");
        assert!(done.get("error").is_none(), "{done}");
        let resource = op_name.rsplitn(3, '/').nth(2).expect("operations/ID suffix");
        self.call(Some(token), Method::GET, &format!("/iam/v1/{resource}"), None).await
    }

    async fn sts(&self, audience: &str, subject: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", audience),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("subject_token", subject),
        ];
        let resp = self.http.post(format!("{}/sts/v1/token", self.base)).form(&form).send().await.expect("sts");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn launch() -> SimulatedLaunch {
    SimulatedLaunch {
        image_reference: "registry.local/nb@".to_string() + DIGEST,
        image_digest: DIGEST.into(),
        project_id: "operator".into(),
        project_number: "42".into(),
        zone: "local-a".into(),
        instance_name: "job-1".into(),
        instance_id: "7".into(),
        ..Default::default()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_and_providers_follow_googles_lifecycle() {
    let (cloud, _dir) = start("lifecycle").await;
    let api = Api { base: cloud.endpoint(), http: Client::new() };
    let admin = cloud.admin_token();
    let number = LocalCloud::project_number(PROJECT);
    let pools = format!("/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools");

    for bad in ["abc", "gcp-mine", "Upper1", &"a".repeat(33)] {
        let (s, b) = api
            .call(Some(&admin), Method::POST, &format!("{pools}?workloadIdentityPoolId={bad}"), Some(json!({})))
            .await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    let (s, pool) = api
        .op(
            &admin,
            Method::POST,
            &format!("{pools}?workloadIdentityPoolId=dcr-pool"),
            Some(json!({"displayName": "p"})),
        )
        .await;
    assert_eq!(s, 200, "{pool}");
    assert_eq!(
        pool["name"],
        format!("projects/{number}/locations/global/workloadIdentityPools/dcr-pool"),
        "names carry the project number"
    );
    assert_eq!(pool["state"], "ACTIVE");
    let (s, _) = api
        .call(Some(&admin), Method::POST, &format!("{pools}?workloadIdentityPoolId=dcr-pool"), Some(json!({})))
        .await;
    assert_eq!(s, 409);

    let provider_path = format!("{pools}/dcr-pool/providers");
    let good = json!({"oidc": {"issuerUri": LOCAL_ISSUER, "allowedAudiences": [STS_AUDIENCE]},
                      "attributeMapping": {"google.subject": "assertion.sub"},
                      "attributeCondition": "assertion.swname == 'CONFIDENTIAL_SPACE'"});
    let mut no_subject = good.clone();
    no_subject["attributeMapping"] = json!({"attribute.a": "assertion.sub"});
    let (s, b) = api
        .call(
            Some(&admin),
            Method::POST,
            &format!("{provider_path}?workloadIdentityPoolProviderId=tee1"),
            Some(no_subject),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, p) = api
        .op(&admin, Method::POST, &format!("{provider_path}?workloadIdentityPoolProviderId=tee1"), Some(good.clone()))
        .await;
    assert_eq!(s, 200, "{p}");

    // Patch needs an updateMask naming updatable fields.
    let prov = format!("{provider_path}/tee1");
    let (s, _) = api.call(Some(&admin), Method::PATCH, &prov, Some(json!({"attributeCondition": "true"}))).await;
    assert_eq!(s, 400);
    let (s, p) = api
        .op(
            &admin,
            Method::PATCH,
            &format!("{prov}?updateMask=attributeCondition"),
            Some(json!({"attributeCondition": "true"})),
        )
        .await;
    assert_eq!((s, p["attributeCondition"].as_str()), (StatusCode::OK, Some("true")));
    // The mask paths terraform-provider-google sends for OIDC changes (snake_case sub-fields).
    let (s, p) = api
        .op(
            &admin,
            Method::PATCH,
            &format!("{prov}?updateMask=oidc.allowed_audiences,oidc.issuer_uri,oidc.jwks_json"),
            Some(json!({"oidc": {"issuerUri": "https://issuer.example", "allowedAudiences": ["aud-1"]}})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["oidc"], json!({"issuerUri": "https://issuer.example", "allowedAudiences": ["aud-1"]}));

    // Soft delete: still readable as DELETED, the id blocked, undelete brings it back.
    let (s, d) = api.op(&admin, Method::DELETE, &prov, None).await;
    assert_eq!((s, d["state"].as_str()), (StatusCode::OK, Some("DELETED")), "{d}");
    assert!(d["expireTime"].is_string());
    let (s, g) = api.call(Some(&admin), Method::GET, &prov, None).await;
    assert_eq!((s, g["state"].as_str()), (StatusCode::OK, Some("DELETED")));
    let (s, list) = api.call(Some(&admin), Method::GET, &provider_path, None).await;
    assert_eq!((s, list.get("workloadIdentityPoolProviders")), (StatusCode::OK, None), "{list}");
    let (_, list) = api.call(Some(&admin), Method::GET, &format!("{provider_path}?showDeleted=true"), None).await;
    assert_eq!(list["workloadIdentityPoolProviders"].as_array().map(Vec::len), Some(1));
    let (s, _) = api
        .call(Some(&admin), Method::POST, &format!("{provider_path}?workloadIdentityPoolProviderId=tee1"), Some(good))
        .await;
    assert_eq!(s, 409, "a soft-deleted id cannot be re-created");
    let (s, _) = api
        .call(Some(&admin), Method::PATCH, &format!("{prov}?updateMask=disabled"), Some(json!({"disabled": true})))
        .await;
    assert_eq!(s, 400, "deleted providers cannot be updated");
    let (s, u) = api.op(&admin, Method::POST, &format!("{prov}:undelete"), Some(json!({}))).await;
    assert_eq!((s, u["state"].as_str()), (StatusCode::OK, Some("ACTIVE")), "{u}");
    let (s, _) = api.call(Some(&admin), Method::POST, &format!("{prov}:undelete"), Some(json!({}))).await;
    assert_eq!(s, 400, "an active provider cannot be undeleted");

    // Someone without IAM permissions learns nothing.
    let mallory = cloud.mint_token("user:mallory@example.com", std::time::Duration::from_secs(60)).unwrap();
    let (s, _) = api.call(Some(&mallory), Method::GET, &prov, None).await;
    assert_eq!(s, 403);
    // The project number names the project too.
    let (s, _) = api
        .call(
            Some(&admin),
            Method::GET,
            &format!("/iam/v1/projects/{number}/locations/global/workloadIdentityPools/dcr-pool"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, proj) =
        api.call(Some(&admin), Method::GET, &format!("/cloudresourcemanager/v1/projects/{PROJECT}"), None).await;
    assert_eq!((s, proj["projectNumber"].as_str()), (StatusCode::OK, Some(number.as_str())));
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_exchanges_only_tokens_that_pass_every_check() {
    let (cloud, _dir) = start("sts").await;
    let api = Api { base: cloud.endpoint(), http: Client::new() };
    let admin = cloud.admin_token();
    let number = LocalCloud::project_number(PROJECT);
    let pools = format!("/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools");
    api.op(&admin, Method::POST, &format!("{pools}?workloadIdentityPoolId=dcr-p"), Some(json!({}))).await;
    let condition =
        format!("assertion.submods.container.image_digest in ['{DIGEST}'] && assertion.dbgstat == 'enabled'");
    let (s, _) = api
        .op(
            &admin,
            Method::POST,
            &format!("{pools}/dcr-p/providers?workloadIdentityPoolProviderId=attestation"),
            Some(json!({"oidc": {"issuerUri": LOCAL_ISSUER, "allowedAudiences": [STS_AUDIENCE]},
                        "attributeMapping": dcr_attestation::condition::attribute_mapping(),
                        "attributeCondition": condition})),
        )
        .await;
    assert_eq!(s, 200);
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/dcr-p/providers/attestation"
    );

    // A bucket only the pool's principals may read.
    let (s, _) = api
        .call(
            Some(&admin),
            Method::POST,
            &format!("/storage/v1/b?project={PROJECT}"),
            Some(json!({"name": "fed-data"})),
        )
        .await;
    assert_eq!(s, 200);
    let up = api
        .http
        .post(format!("{}/upload/storage/v1/b/fed-data/o?uploadType=media&name=x.txt", api.base))
        .bearer_auth(&admin)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let (_, policy) = api.call(Some(&admin), Method::GET, "/storage/v1/b/fed-data/iam", None).await;
    let mut policy = policy;
    policy["bindings"] = json!([{"role": "roles/storage.objectViewer",
        "members": [format!("principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/dcr-p/*")]}]);
    let (s, b) = api.call(Some(&admin), Method::PUT, "/storage/v1/b/fed-data/iam", Some(policy)).await;
    assert_eq!(s, 200, "{b}");

    let issuer = cloud.issuer();
    let t = now();
    let good = AttestationClaims::simulated(&launch(), t, STS_AUDIENCE, &[]);
    let (s, ok) = api.sts(&audience, &issuer.mint(&good).unwrap()).await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 3600);
    let fed = ok["access_token"].as_str().unwrap().to_string();
    let (s, _) = api.call(Some(&fed), Method::GET, "/storage/v1/b/fed-data/o/x.txt?alt=media", None).await;
    assert_eq!(s, 200, "the federated principal reads through its principal set");

    // Bindings by mapped attribute or by subject grant too; another attribute value does not.
    let base = format!("iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/dcr-p");
    for (member, readable) in [
        (format!("principalSet://{base}/attribute.image_digest/{DIGEST}"), true),
        (format!("principal://{base}/subject/gce::42::7"), true),
        (format!("principalSet://{base}/attribute.image_digest/{}", DIGEST.replace('1', "3")), false),
        (format!("principal://{base}/subject/gce::42::8"), false),
    ] {
        let (_, mut policy) = api.call(Some(&admin), Method::GET, "/storage/v1/b/fed-data/iam", None).await;
        policy["bindings"] = json!([{"role": "roles/storage.objectViewer", "members": [member]}]);
        let (s, b) = api.call(Some(&admin), Method::PUT, "/storage/v1/b/fed-data/iam", Some(policy)).await;
        assert_eq!(s, 200, "{b}");
        let (s, _) = api.call(Some(&fed), Method::GET, "/storage/v1/b/fed-data/o/x.txt?alt=media", None).await;
        assert_eq!(s == 200, readable, "{member}: {s}");
    }

    let expect_refusal = |claims: &AttestationClaims| {
        let token = issuer.mint(claims).unwrap();
        let api = &api;
        let audience = audience.clone();
        async move { api.sts(&audience, &token).await }
    };
    let mut other_digest = good.clone();
    other_digest.submods.container.image_digest = DIGEST.replace('1', "2");
    let (s, e) = expect_refusal(&other_digest).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")), "{e}");
    assert!(e["error_description"].as_str().unwrap().contains("image_digest"), "{e}");

    let mut expired = good.clone();
    (expired.iat, expired.exp) = (t - 7200, t - 3600);
    let (_, e) = expect_refusal(&expired).await;
    assert!(e["error_description"].as_str().unwrap().contains("expiry check failed"), "{e}");

    let mut future = good.clone();
    (future.iat, future.nbf) = (t + 3600, None);
    future.exp = t + 7200;
    let (_, e) = expect_refusal(&future).await;
    assert!(e["error_description"].as_str().unwrap().contains("issued-at check failed"), "{e}");

    let mut wrong_aud = good.clone();
    wrong_aud.aud = json!("https://relying-party.example");
    let (_, e) = expect_refusal(&wrong_aud).await;
    assert!(e["error_description"].as_str().unwrap().contains("audience check failed"), "{e}");

    // Signed by a key the issuer never published, claiming the issuer's kid or its own.
    let rogue = dcr_attestation::SigningKey::generate().unwrap();
    let real_kid = issuer.jwks().unwrap().keys[0].common.key_id.clone().unwrap();
    let (_, e) = api.sts(&audience, &rogue.sign_as(&good, &real_kid).unwrap()).await;
    assert!(e["error_description"].as_str().unwrap().contains("signature check failed"), "{e}");
    let (_, e) = api.sts(&audience, &rogue.sign(&good).unwrap()).await;
    assert!(e["error_description"].as_str().unwrap().contains("key id check failed"), "{e}");

    let (s, e) = api.sts(&audience.replace("dcr-p", "nope"), &issuer.mint(&good).unwrap()).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_target")), "{e}");

    // Disabling the pool stops the exchange and the tokens already issued.
    let (s, _) = api
        .op(&admin, Method::PATCH, &format!("{pools}/dcr-p?updateMask=disabled"), Some(json!({"disabled": true})))
        .await;
    assert_eq!(s, 200);
    let (_, e) = api.sts(&audience, &issuer.mint(&good).unwrap()).await;
    assert_eq!(e["error"], "invalid_target", "{e}");
    let (s, _) = api.call(Some(&fed), Method::GET, "/storage/v1/b/fed-data/o/x.txt?alt=media", None).await;
    assert_eq!(s, 401);

    // The issuer's documents are public.
    let (s, d) = api.call(None, Method::GET, "/simulated-tee/.well-known/openid-configuration", None).await;
    assert_eq!((s, d["issuer"].as_str()), (StatusCode::OK, Some(LOCAL_ISSUER)));
    let (s, jwks) = api.call(None, Method::GET, "/simulated-tee/jwks", None).await;
    assert_eq!((s, jwks["keys"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    cloud.shutdown().await;
}
