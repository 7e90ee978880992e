//! Verifying a released run as an auditor does, from its files alone: the attestation token is
//! genuine and for this run, its nonce is the output manifest's hash, the manifest's inputs were
//! held to the policy documents the auditor has, the attested image is one those policies (and
//! the auditor) pinned, the hardware is what they require, and every released file is the one the
//! manifest lists. Each failure names one [`RunCheck`], which the `dcr verify` command turns into
//! its exit code.
//!
//! Pure logic: reading the files, hashing them and finding the issuer's keys are the caller's.

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::audit::ClaimsSummary;
use crate::claims::{LOCAL_ISSUER, audiences, same_issuer};
use crate::policy::PolicyDocument;
use crate::verify::{Attested, Check, Expectations, check_attested, verify};
use crate::workload::{OutputManifest, hex_sha256, output_nonce};

/// The checks of a run, in the order they are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunCheck {
    /// The manifest and token are present and well-formed.
    Files,
    /// The token's signature verifies with its issuer's keys, and its issuer is the policies'.
    Token,
    /// The token was issued for this run's location.
    Audience,
    /// The token's nonce is the SHA-256 of the output manifest.
    Nonce,
    /// Each input's policy document is the one the run read (name, version, hash), covering it.
    Policy,
    /// The attested image is the manifest's, and pinned by every policy and the auditor.
    ImageDigest,
    /// Confidential hardware, debug status and image stability as the policies require.
    Hardware,
    /// Every released file is the manifest's, byte for byte, and there is no other.
    Outputs,
}

impl RunCheck {
    pub const ALL: [RunCheck; 8] = [
        RunCheck::Files,
        RunCheck::Token,
        RunCheck::Audience,
        RunCheck::Nonce,
        RunCheck::Policy,
        RunCheck::ImageDigest,
        RunCheck::Hardware,
        RunCheck::Outputs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RunCheck::Files => "files",
            RunCheck::Token => "token",
            RunCheck::Audience => "audience",
            RunCheck::Nonce => "nonce",
            RunCheck::Policy => "policy",
            RunCheck::ImageDigest => "image-digest",
            RunCheck::Hardware => "hardware",
            RunCheck::Outputs => "outputs",
        }
    }

    /// The process exit code of a failed check: 10 and up, one per check, so a pipeline can tell
    /// them apart (1 and 2 stay for "could not verify" and usage errors).
    pub fn exit_code(self) -> i32 {
        10 + RunCheck::ALL.iter().position(|c| *c == self).expect("every check is listed") as i32
    }

    pub fn what(self) -> &'static str {
        match self {
            RunCheck::Files => "the run's output manifest and attestation token are present and well-formed",
            RunCheck::Token => "the token's signature verifies with the issuer's keys; the issuer is the policies'",
            RunCheck::Audience => "the token was issued for this run's location",
            RunCheck::Nonce => "the token's nonce is the SHA-256 of output-manifest.json",
            RunCheck::Policy => "each input's policy document is the version (and bytes) the run read",
            RunCheck::ImageDigest => "the attested image digest is pinned by every policy (and by you)",
            RunCheck::Hardware => "hardware, debug status and image stability are what the policies require",
            RunCheck::Outputs => "every released file matches the manifest's size and SHA-256; no other file",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} check failed: {detail}", check.name())]
pub struct RunFailure {
    pub check: RunCheck,
    pub detail: String,
}

fn fail(check: RunCheck, detail: impl Into<String>) -> RunFailure {
    RunFailure { check, detail: detail.into() }
}

/// A file found under a run's `outputs/`, by its path relative to it (`summary.csv`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl FoundFile {
    pub fn of(name: &str, bytes: &[u8]) -> FoundFile {
        FoundFile { name: name.to_string(), size: bytes.len() as u64, sha256: hex_sha256(bytes) }
    }
}

/// What a run left: the manifest's bytes, the token, and the files found beside them.
pub struct RunFiles<'a> {
    pub manifest: &'a [u8],
    pub token: &'a str,
    pub outputs: &'a [FoundFile],
}

/// What the auditor brings besides the files.
#[derive(Clone, Debug, Default)]
pub struct RunExpected {
    /// The policy documents of the run's inputs, as read (their bytes are hashed).
    pub policies: Vec<Vec<u8>>,
    /// The issuer, when the auditor names it; otherwise the policies' issuer.
    pub issuer: Option<String>,
    /// The run's location (`gs://BUCKET/PREFIX<digest hex>/`) when known; the token's audience.
    pub location: Option<String>,
    /// Digests the auditor pins too: the attested one must also be among these (empty: no own pins).
    pub allowed_digests: Vec<String>,
    /// Demand confidential hardware and a production image even where the policies do not.
    pub require_confidential_hardware: bool,
}

/// A verified run: what it says, and the claims that say it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VerifiedRun {
    pub workload: String,
    pub image_digest: String,
    /// Policy name and version each input was held to.
    pub policies: Vec<(String, u64)>,
    pub outputs: Vec<String>,
    /// Tokens of dcr's simulated issuer show the flow, not confidentiality.
    pub simulated: bool,
    pub claims: ClaimsSummary,
}

/// Runs every check on `files`, returning the first that fails.
pub fn verify_run(files: &RunFiles<'_>, jwks: &JwkSet, expected: &RunExpected) -> Result<VerifiedRun, RunFailure> {
    let manifest = OutputManifest::from_bytes(files.manifest)
        .map_err(|e| fail(RunCheck::Files, format!("output-manifest.json: {e}")))?;
    let policies = expected
        .policies
        .iter()
        .map(|b| PolicyDocument::from_bytes(b).map(|d| (d, hex_sha256(b))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(RunCheck::Policy, format!("a policy document given: {e}")))?;

    let issuer = issuer_to_expect(expected, &policies)?;
    let claims = verify(files.token.trim(), jwks, &Expectations { now: None, ..Expectations::new(issuer, 0) })
        .map_err(|e| {
            let check = if e.check == Check::Format { RunCheck::Files } else { RunCheck::Token };
            fail(check, format!("attestation-token.jwt: {e}"))
        })?;

    if let Some(location) = &expected.location {
        let aud = audiences(&claims["aud"]);
        if !aud.contains(location) {
            return Err(fail(RunCheck::Audience, format!("the token is for {aud:?}, not this run's {location}")));
        }
    }

    let nonce = output_nonce(files.manifest);
    check_attested(&claims, &Attested { nonce: Some(nonce.clone()), ..Default::default() }).map_err(|_| {
        fail(
            RunCheck::Nonce,
            format!("output-manifest.json hashes to {nonce}, which is not the token's nonce: the manifest is not the one the TEE released"),
        )
    })?;

    let held_to = check_policies(&manifest, &policies, claims["iss"].as_str().unwrap_or_default())?;
    let attested_digest = claims.pointer("/submods/container/image_digest").and_then(Value::as_str).unwrap_or("");
    check_digest(attested_digest, &manifest, &policies, &expected.allowed_digests)?;
    for (p, _) in &policies {
        let r = &p.rules;
        let want = Attested {
            require_confidential_hardware: r.require_confidential_hardware || expected.require_confidential_hardware,
            allowed_hardware: r.allowed_hardware.clone(),
            allow_debug: Some(r.allow_debug && !expected.require_confidential_hardware),
            require_stable_image: r.require_stable_image,
            ..Default::default()
        };
        check_attested(&claims, &want).map_err(|e| fail(RunCheck::Hardware, format!("policy {:?}: {e}", p.name)))?;
    }
    check_outputs(&manifest, files.outputs)?;

    Ok(VerifiedRun {
        workload: manifest.workload.clone(),
        image_digest: manifest.image_digest.clone(),
        policies: held_to,
        outputs: manifest.outputs.iter().map(|o| o.name.clone()).collect(),
        simulated: same_issuer(claims["iss"].as_str().unwrap_or_default(), LOCAL_ISSUER),
        claims: ClaimsSummary::of(&claims),
    })
}

fn issuer_to_expect(expected: &RunExpected, policies: &[(PolicyDocument, String)]) -> Result<String, RunFailure> {
    if let Some(i) = &expected.issuer {
        return Ok(i.clone());
    }
    policies.first().map(|(p, _)| p.issuer.clone()).ok_or_else(|| {
        fail(
            RunCheck::Policy,
            "no policy document: give each input's policy document (dcr verify --policy FILE), or name the issuer",
        )
    })
}

/// Each input names the policy document it read; the auditor's must be that document.
fn check_policies(
    manifest: &OutputManifest,
    policies: &[(PolicyDocument, String)],
    issuer: &str,
) -> Result<Vec<(String, u64)>, RunFailure> {
    if policies.is_empty() {
        return Err(fail(RunCheck::Policy, "no policy document: give each input's policy document (--policy FILE)"));
    }
    let mut held_to = Vec::new();
    for input in &manifest.inputs {
        let named: Vec<&(PolicyDocument, String)> = policies.iter().filter(|(p, _)| p.name == input.policy).collect();
        let Some((doc, sha)) = named.iter().find(|(p, _)| p.version == input.policy_version) else {
            let have: Vec<u64> = named.iter().map(|(p, _)| p.version).collect();
            let detail = if have.is_empty() {
                format!(
                    "input {:?} was held to policy {:?}, and no document of that policy was given",
                    input.name, input.policy
                )
            } else {
                format!(
                    "input {:?} was held to policy {:?} version {}; the document given is version {have:?} (the policy changed since the run: give the version-{} document)",
                    input.name, input.policy, input.policy_version, input.policy_version
                )
            };
            return Err(fail(RunCheck::Policy, detail));
        };
        if !input.policy_sha256.is_empty() && &input.policy_sha256 != sha {
            return Err(fail(
                RunCheck::Policy,
                format!(
                    "policy {:?} version {}: the document given hashes to {sha}, the run read {}",
                    doc.name, doc.version, input.policy_sha256
                ),
            ));
        }
        if !doc.datasets.iter().any(|d| d.id == input.dataset) {
            return Err(fail(
                RunCheck::Policy,
                format!("policy {:?} does not cover dataset {:?} (input {:?})", doc.name, input.dataset, input.name),
            ));
        }
        if !same_issuer(&doc.issuer, issuer) {
            return Err(fail(
                RunCheck::Policy,
                format!("policy {:?} trusts issuer {:?}, the token is from {issuer:?}", doc.name, doc.issuer),
            ));
        }
        held_to.push((doc.name.clone(), doc.version));
    }
    if held_to.is_empty() {
        return Err(fail(RunCheck::Policy, "the manifest names no input, so no policy held the run"));
    }
    Ok(held_to)
}

fn check_digest(
    attested: &str,
    manifest: &OutputManifest,
    policies: &[(PolicyDocument, String)],
    own: &[String],
) -> Result<(), RunFailure> {
    if attested != manifest.image_digest {
        return Err(fail(
            RunCheck::ImageDigest,
            format!("the token attests image {attested:?}, the manifest says {:?}", manifest.image_digest),
        ));
    }
    let held: Vec<&str> = manifest.inputs.iter().map(|i| i.policy.as_str()).collect();
    for (p, _) in policies.iter().filter(|(p, _)| held.contains(&p.name.as_str())) {
        if !p.rules.allowed_image_digests.iter().any(|d| d == attested) {
            return Err(fail(
                RunCheck::ImageDigest,
                format!("policy {:?} version {} does not pin {attested}", p.name, p.version),
            ));
        }
    }
    if !own.is_empty() && !own.iter().any(|d| d == attested) {
        return Err(fail(RunCheck::ImageDigest, format!("{attested} is not among the digests you pinned: {own:?}")));
    }
    Ok(())
}

fn check_outputs(manifest: &OutputManifest, found: &[FoundFile]) -> Result<(), RunFailure> {
    for listed in &manifest.outputs {
        let Some(f) = found.iter().find(|f| f.name == listed.name) else {
            return Err(fail(RunCheck::Outputs, format!("{} is in the manifest but was not released", listed.name)));
        };
        if f.size != listed.size || f.sha256 != listed.sha256 {
            return Err(fail(
                RunCheck::Outputs,
                format!(
                    "{}: {} bytes with SHA-256 {}, the manifest says {} bytes with SHA-256 {}",
                    f.name, f.size, f.sha256, listed.size, listed.sha256
                ),
            ));
        }
    }
    if let Some(extra) = found.iter().find(|f| !manifest.outputs.iter().any(|o| o.name == f.name)) {
        return Err(fail(
            RunCheck::Outputs,
            format!("{} is not in the manifest: the TEE did not release it", extra.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use crate::claims::{AttestationClaims, SimulatedLaunch};
    use crate::policy::{AttestationRules, DatasetRef, FORMAT, OutputRules};
    use crate::workload::{InputRecord, OUTPUT_FORMAT, OutputFile};

    const DIGEST: &str = "sha256:aa";
    const LOCATION: &str = "gs://out/runs/aa/";

    fn policy(version: u64, digests: &[&str]) -> PolicyDocument {
        PolicyDocument {
            format: FORMAT.into(),
            name: "study".into(),
            version,
            issuer: LOCAL_ISSUER.into(),
            audience: "//iam/p".into(),
            workload_identity_provider: "p".into(),
            attribute_condition: "true".into(),
            datasets: vec![DatasetRef {
                id: "b/patients".into(),
                object_uri: "gs://b/p.enc".into(),
                crypto_key: "k".into(),
            }],
            rules: AttestationRules {
                allowed_image_digests: digests.iter().map(|d| d.to_string()).collect(),
                require_confidential_hardware: false,
                allowed_hardware: vec![],
                allow_debug: true,
                require_stable_image: false,
            },
            output: OutputRules { max_bytes: 1000, allowed_extensions: vec!["csv".into()], readers: vec![] },
        }
    }

    struct Run {
        manifest: Vec<u8>,
        token: String,
        outputs: Vec<FoundFile>,
        jwks: JwkSet,
        expected: RunExpected,
    }

    fn run() -> Run {
        let key = SigningKey::generate().unwrap();
        let doc = policy(3, &[DIGEST]).to_bytes();
        let summary = b"region,patients\nnorth,12\n";
        let manifest = OutputManifest {
            format: OUTPUT_FORMAT.into(),
            workload: "study".into(),
            image_digest: DIGEST.into(),
            inputs: vec![InputRecord {
                name: "patients".into(),
                dataset: "b/patients".into(),
                object_uri: "gs://b/p.enc".into(),
                generation: "7".into(),
                policy: "study".into(),
                policy_version: 3,
                policy_uri: "gs://pol/policy.json".into(),
                policy_sha256: hex_sha256(&doc),
                readers: vec![],
            }],
            outputs: vec![OutputFile { name: "summary.csv".into(), size: 25, sha256: hex_sha256(summary) }],
        }
        .to_bytes();
        let launch = SimulatedLaunch { image_digest: DIGEST.into(), ..Default::default() };
        let claims = AttestationClaims::simulated(&launch, 1000, LOCATION, &[output_nonce(&manifest)]);
        Run {
            token: key.sign(&claims).unwrap(),
            manifest,
            outputs: vec![FoundFile::of("summary.csv", summary)],
            jwks: key.jwks(),
            expected: RunExpected { policies: vec![doc], location: Some(LOCATION.into()), ..Default::default() },
        }
    }

    fn check(r: &Run) -> Result<VerifiedRun, RunFailure> {
        verify_run(&RunFiles { manifest: &r.manifest, token: &r.token, outputs: &r.outputs }, &r.jwks, &r.expected)
    }

    fn failed(r: &Run) -> RunCheck {
        check(r).unwrap_err().check
    }

    #[test]
    fn a_genuine_run_verifies() {
        let v = check(&run()).unwrap();
        assert_eq!(v.policies, vec![("study".to_string(), 3)]);
        assert_eq!(v.outputs, vec!["summary.csv".to_string()]);
        assert!(v.simulated);
        assert_eq!(v.claims.image_digest, DIGEST);
    }

    #[test]
    fn one_changed_byte_anywhere_fails_the_check_it_belongs_to() {
        let mut r = run();
        r.outputs[0].sha256.replace_range(0..1, "0");
        assert_eq!(failed(&r), RunCheck::Outputs);
        let mut r = run();
        let at = r.manifest.iter().position(|b| *b == b'7').unwrap();
        r.manifest[at] = b'8';
        assert_eq!(failed(&r), RunCheck::Nonce);
        let mut r = run();
        let sig = r.token.rfind('.').unwrap() + 3;
        let flipped = if &r.token[sig..sig + 1] == "A" { "B" } else { "A" };
        r.token.replace_range(sig..sig + 1, flipped);
        assert_eq!(failed(&r), RunCheck::Token);
        let mut r = run();
        r.manifest = b"{".to_vec();
        assert_eq!(failed(&r), RunCheck::Files);
    }

    #[test]
    fn extra_or_missing_outputs_fail() {
        let mut r = run();
        r.outputs.push(FoundFile::of("leak.csv", b"x"));
        assert!(check(&r).unwrap_err().detail.contains("leak.csv is not in the manifest"));
        let mut r = run();
        r.outputs.clear();
        assert_eq!(failed(&r), RunCheck::Outputs);
    }

    #[test]
    fn the_digest_must_be_pinned_by_the_policy_and_the_auditor() {
        let mut r = run();
        r.expected.allowed_digests = vec!["sha256:bb".into()];
        assert_eq!(failed(&r), RunCheck::ImageDigest);
        r.expected.allowed_digests.push(DIGEST.into());
        assert!(check(&r).is_ok());
        // A policy document whose hash is not the one the run read fails first, at policy.
        let mut r = run();
        r.expected.policies = vec![policy(3, &["sha256:bb"]).to_bytes()];
        assert_eq!(failed(&r), RunCheck::Policy);
    }

    #[test]
    fn a_changed_policy_or_none_fails_at_policy() {
        let mut r = run();
        r.expected.policies = vec![policy(4, &[DIGEST]).to_bytes()];
        let e = check(&r).unwrap_err();
        assert_eq!(e.check, RunCheck::Policy);
        assert!(e.detail.contains("version 3") && e.detail.contains("[4]"), "{e}");
        r.expected.policies.clear();
        assert_eq!(failed(&r), RunCheck::Policy);
        r.expected.issuer = Some(LOCAL_ISSUER.into());
        assert_eq!(failed(&r), RunCheck::Policy);
    }

    #[test]
    fn simulated_hardware_fails_when_confidential_hardware_is_required() {
        let mut r = run();
        r.expected.require_confidential_hardware = true;
        assert_eq!(failed(&r), RunCheck::Hardware);
    }

    #[test]
    fn a_token_for_another_location_fails_at_audience() {
        let mut r = run();
        r.expected.location = Some("gs://out/runs/bb/".into());
        assert_eq!(failed(&r), RunCheck::Audience);
    }

    #[test]
    fn exit_codes_are_distinct_and_above_usage_errors() {
        let codes: Vec<i32> = RunCheck::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes, (10..18).collect::<Vec<_>>());
    }
}
