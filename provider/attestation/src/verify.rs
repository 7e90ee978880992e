//! Verifying an attestation token: signature against the issuer's JWKS, then each standard claim.
//! Every refusal names the check that failed, because "invalid token" helps nobody debug a policy.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::claims::{audiences, same_issuer};

/// The checks a token goes through, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Format,
    Algorithm,
    KeyId,
    Signature,
    Issuer,
    Audience,
    Expiry,
    NotBefore,
    IssuedAt,
    ImageDigest,
    Nonce,
    Hardware,
    Debug,
    StableImage,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Format => "format",
            Check::Algorithm => "algorithm",
            Check::KeyId => "key id",
            Check::Signature => "signature",
            Check::Issuer => "issuer",
            Check::Audience => "audience",
            Check::Expiry => "expiry",
            Check::NotBefore => "not-before",
            Check::IssuedAt => "issued-at",
            Check::ImageDigest => "image digest",
            Check::Nonce => "nonce",
            Check::Hardware => "hardware",
            Check::Debug => "debug status",
            Check::StableImage => "stable image",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} check failed: {detail}", check.name())]
pub struct VerifyError {
    pub check: Check,
    pub detail: String,
}

fn fail(check: Check, detail: impl Into<String>) -> VerifyError {
    VerifyError { check, detail: detail.into() }
}

/// What a token must satisfy besides its signature.
#[derive(Clone, Debug)]
pub struct Expectations {
    pub issuer: String,
    /// The token's `aud` must contain one of these (none: any audience).
    pub audiences: Vec<String>,
    /// Unix seconds; `None` skips the time checks (an auditor verifying a token long after it
    /// expired still learns whether it was genuine).
    pub now: Option<i64>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// Oldest acceptable `iat` relative to `now` (STS refuses tokens issued over 24 h ago).
    pub max_age: Option<i64>,
}

impl Expectations {
    pub fn new(issuer: impl Into<String>, now: i64) -> Expectations {
        Expectations { issuer: issuer.into(), audiences: Vec::new(), now: Some(now), leeway: 60, max_age: None }
    }
}

/// Algorithms Google's STS accepts for OIDC subject tokens.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Verifies `token` against `jwks` and `expect`, returning its claims as JSON.
pub fn verify(token: &str, jwks: &JwkSet, expect: &Expectations) -> Result<Value, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| fail(Check::Format, format!("not a JWT: {e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(fail(Check::Algorithm, format!("alg {:?} is not RS256 or ES256", header.alg)));
    }
    let kid = header.kid.as_deref().ok_or_else(|| fail(Check::KeyId, "the header has no kid"))?;
    let jwk = jwks.find(kid).ok_or_else(|| fail(Check::KeyId, format!("kid {kid:?} is not in the issuer's JWKS")))?;
    let key =
        DecodingKey::from_jwk(jwk).map_err(|e| fail(Check::KeyId, format!("JWKS key {kid:?} is unusable: {e}")))?;
    // jsonwebtoken checks only the signature here; each claim is checked below so that a failure
    // names its check.
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
            fail(Check::Signature, format!("the signature does not verify with JWKS key {kid:?}"))
        }
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
            fail(Check::Algorithm, format!("alg {:?} does not match JWKS key {kid:?}", header.alg))
        }
        _ => fail(Check::Format, e.to_string()),
    })?;
    let claims = data.claims;
    check_claims(&claims, expect)?;
    Ok(claims)
}

/// The claim checks, on claims whose signature is already verified.
pub fn check_claims(claims: &Value, expect: &Expectations) -> Result<(), VerifyError> {
    let iss = claims["iss"].as_str().unwrap_or("");
    if !same_issuer(iss, &expect.issuer) {
        return Err(fail(Check::Issuer, format!("iss is {iss:?}, expected {:?}", expect.issuer)));
    }
    if !expect.audiences.is_empty() {
        let aud = audiences(&claims["aud"]);
        if !aud.iter().any(|a| expect.audiences.contains(a)) {
            return Err(fail(Check::Audience, format!("aud is {aud:?}, expected one of {:?}", expect.audiences)));
        }
    }
    let exp = claims["exp"].as_i64().ok_or_else(|| fail(Check::Expiry, "the token has no exp"))?;
    let iat = claims["iat"].as_i64().ok_or_else(|| fail(Check::IssuedAt, "the token has no iat"))?;
    let Some(now) = expect.now else { return Ok(()) };
    let leeway = expect.leeway;
    if now > exp + leeway {
        return Err(fail(Check::Expiry, format!("the token expired {} s ago", now - exp)));
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && now + leeway < nbf
    {
        return Err(fail(Check::NotBefore, format!("the token is not valid for another {} s", nbf - now)));
    }
    if iat > now + leeway {
        return Err(fail(Check::IssuedAt, format!("iat is {} s in the future", iat - now)));
    }
    if let Some(max) = expect.max_age
        && now - iat > max
    {
        return Err(fail(
            Check::IssuedAt,
            format!("the token was issued {} s ago; at most {max} s is accepted", now - iat),
        ));
    }
    Ok(())
}

/// What a genuine token must attest to, beyond being genuine. `None` and empty lists check nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attested {
    pub image_digest: Option<String>,
    /// One of the token's `eat_nonce` values.
    pub nonce: Option<String>,
    pub require_confidential_hardware: bool,
    /// Accepted `hwmodel`s when confidential hardware is required (empty: any confidential hardware).
    pub allowed_hardware: Vec<String>,
    /// `Some(false)`: the image must not be a debug image.
    pub allow_debug: Option<bool>,
    pub require_stable_image: bool,
}

/// The nonces of a token (`eat_nonce` is a string for one, a list for several).
pub fn nonces(claims: &Value) -> Vec<String> {
    crate::claims::string_or_list(&claims["eat_nonce"])
}

/// Checks the attested facts of verified claims, naming the first that does not hold.
pub fn check_attested(claims: &Value, want: &Attested) -> Result<(), VerifyError> {
    use crate::claims::{CONFIDENTIAL_HARDWARE, CONFIDENTIAL_SPACE, DEBUG_DISABLED};
    let at = |p: &str| claims.pointer(p).and_then(Value::as_str).unwrap_or("");
    if let Some(d) = &want.image_digest
        && at("/submods/container/image_digest") != d
    {
        return Err(fail(
            Check::ImageDigest,
            format!("the token attests image {:?}, expected {d:?}", at("/submods/container/image_digest")),
        ));
    }
    if let Some(n) = &want.nonce
        && !nonces(claims).contains(n)
    {
        return Err(fail(Check::Nonce, format!("the token's nonces {:?} do not include {n:?}", nonces(claims))));
    }
    if want.require_confidential_hardware {
        let (sw, hw) = (at("/swname"), at("/hwmodel"));
        let allowed: Vec<&str> = if want.allowed_hardware.is_empty() {
            CONFIDENTIAL_HARDWARE.to_vec()
        } else {
            want.allowed_hardware.iter().map(String::as_str).collect()
        };
        if sw != CONFIDENTIAL_SPACE || !allowed.contains(&hw) {
            return Err(fail(
                Check::Hardware,
                format!("the token attests {sw:?} on {hw:?}; required: {CONFIDENTIAL_SPACE} on one of {allowed:?}"),
            ));
        }
    }
    if want.allow_debug == Some(false) && at("/dbgstat") != DEBUG_DISABLED {
        return Err(fail(
            Check::Debug,
            format!("dbgstat is {:?}; only production images ({DEBUG_DISABLED:?}) are accepted", at("/dbgstat")),
        ));
    }
    if want.require_stable_image {
        let support = claims.pointer("/submods/confidential_space/support_attributes");
        if !support.and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "STABLE")) {
            return Err(fail(Check::StableImage, "the image is not a STABLE Confidential Space image"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use serde_json::json;

    const ISS: &str = "https://issuer.example";

    fn setup() -> (SigningKey, JwkSet, Expectations) {
        let key = SigningKey::generate().unwrap();
        let jwks = key.jwks();
        let mut expect = Expectations::new(ISS, 1_000_000);
        expect.audiences = vec!["aud-1".into()];
        (key, jwks, expect)
    }

    fn claims(iat: i64, exp: i64) -> Value {
        json!({"iss": ISS, "aud": ["aud-1", "aud-2"], "sub": "s", "iat": iat, "exp": exp})
    }

    #[test]
    fn a_good_token_verifies_and_each_broken_check_is_named() {
        let (key, jwks, expect) = setup();
        let now = expect.now.unwrap();
        let ok = verify(&key.sign(&claims(now - 10, now + 3600)).unwrap(), &jwks, &expect).unwrap();
        assert_eq!(ok["sub"], "s");
        let check = |c: Value| verify(&key.sign(&c).unwrap(), &jwks, &expect).unwrap_err().check;
        assert_eq!(check(claims(now - 7200, now - 3600)), Check::Expiry);
        assert_eq!(check(claims(now + 3600, now + 7200)), Check::IssuedAt);
        let mut c = claims(now, now + 60);
        c["iss"] = json!("https://other.example");
        assert_eq!(check(c), Check::Issuer);
        let mut c = claims(now, now + 60);
        c["aud"] = json!("aud-3");
        assert_eq!(check(c), Check::Audience);
        let mut c = claims(now, now + 60);
        c["nbf"] = json!(now + 600);
        assert_eq!(check(c), Check::NotBefore);
        let old = Expectations { max_age: Some(3600), ..expect.clone() };
        let e = verify(&key.sign(&claims(now - 7200, now + 60)).unwrap(), &jwks, &old).unwrap_err();
        assert_eq!(e.check, Check::IssuedAt);
    }

    #[test]
    fn foreign_keys_and_garbage_are_refused() {
        let (key, jwks, expect) = setup();
        let rogue = SigningKey::generate().unwrap();
        let now = expect.now.unwrap();
        let c = claims(now, now + 60);
        assert_eq!(verify(&rogue.sign(&c).unwrap(), &jwks, &expect).unwrap_err().check, Check::KeyId);
        assert_eq!(verify(&rogue.sign_as(&c, key.kid()).unwrap(), &jwks, &expect).unwrap_err().check, Check::Signature);
        assert_eq!(verify("not.a.jwt", &jwks, &expect).unwrap_err().check, Check::Format);
        let e = verify(&rogue.sign(&c).unwrap(), &jwks, &expect).unwrap_err();
        assert!(e.to_string().starts_with("key id check failed"), "{e}");
    }

    #[test]
    fn attested_facts_are_checked_only_when_asked() {
        let sim = serde_json::to_value(crate::AttestationClaims::simulated(
            &crate::claims::SimulatedLaunch { image_digest: "sha256:aa".into(), ..Default::default() },
            0,
            "aud",
            &["n1".into(), "n2".into()],
        ))
        .unwrap();
        assert_eq!(check_attested(&sim, &Attested::default()), Ok(()));
        let want = |f: &dyn Fn(&mut Attested)| {
            let mut a = Attested::default();
            f(&mut a);
            check_attested(&sim, &a).err().map(|e| e.check)
        };
        assert_eq!(want(&|a| a.image_digest = Some("sha256:aa".into())), None);
        assert_eq!(want(&|a| a.image_digest = Some("sha256:bb".into())), Some(Check::ImageDigest));
        assert_eq!(want(&|a| a.nonce = Some("n2".into())), None);
        assert_eq!(want(&|a| a.nonce = Some("n3".into())), Some(Check::Nonce));
        assert_eq!(want(&|a| a.require_confidential_hardware = true), Some(Check::Hardware));
        assert_eq!(want(&|a| a.allow_debug = Some(false)), Some(Check::Debug));
        assert_eq!(want(&|a| a.require_stable_image = true), Some(Check::StableImage));
    }
}
