//! Who we are to a registry. Google-hosted registries (Artifact Registry's `LOCATION-docker.pkg.dev`,
//! Container Registry's `gcr.io` hosts) take an OAuth access token as the password of the user
//! `oauth2accesstoken` (https://cloud.google.com/artifact-registry/docs/docker/authentication#token),
//! so the provider pushes there with its own Google credentials. Everything else comes from the Docker
//! config file the way the Docker CLI reads it (`cli/config/configfile/file.go`,
//! `GetCredentialsStore`): a per-host credential helper (`credHelpers`), else the default helper
//! (`credsStore`), else the `auths` entry; anonymous when none applies. Helpers run with Docker's
//! credential-helper protocol (github.com/docker/docker-credential-helpers): `docker-credential-NAME
//! get`, the server on stdin, `{"ServerURL","Username","Secret"}` on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
pub use oci_client::secrets::RegistryAuth;

use crate::error::ImageError;

/// The user name Google-hosted registries take an access token under.
pub const GOOGLE_TOKEN_USER: &str = "oauth2accesstoken";
/// What a credential helper says when it has nothing for a server (docker-credential-helpers'
/// `credentials.errCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found in native keychain";

/// Whether `host` (`HOST[:PORT]`) is a registry Google runs: Artifact Registry's Docker hosts and
/// Container Registry's (served by Artifact Registry since 2024).
pub fn is_google_registry(host: &str) -> bool {
    let name = host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host);
    name.ends_with("-docker.pkg.dev") || name == "gcr.io" || name.ends_with(".gcr.io")
}

/// The credentials for pushing to or pulling from `host`. `google_token` is the caller's own
/// Google access token: used for Google-hosted registries, before anything in the Docker config.
pub fn registry_auth(host: &str, google_token: Option<&str>) -> Result<RegistryAuth, ImageError> {
    if let Some(token) = google_token.filter(|_| is_google_registry(host)) {
        return Ok(RegistryAuth::Basic(GOOGLE_TOKEN_USER.into(), token.to_string()));
    }
    match docker_config_path() {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => auth_from_docker_config(&bytes, host, &RunHelper)
                .map_err(|why| ImageError::Format { what: path.display().to_string(), detail: why }),
            Err(_) => Ok(RegistryAuth::Anonymous),
        },
        None => Ok(RegistryAuth::Anonymous),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".docker"),
    };
    Some(dir.join("config.json"))
}

/// Runs a credential helper; a trait so the choice of helper is tested without running one.
pub trait CredentialHelpers {
    /// `Ok(None)` when the helper has no credentials for `server`.
    fn get(&self, helper: &str, server: &str) -> Result<Option<(String, String)>, String>;
}

/// Runs `docker-credential-NAME get` from `PATH`.
pub struct RunHelper;

impl CredentialHelpers for RunHelper {
    fn get(&self, helper: &str, server: &str) -> Result<Option<(String, String)>, String> {
        let program = format!("docker-credential-{helper}");
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "the Docker config names the credential helper {helper:?} for {server}, but {program} cannot be \
                     run ({e}): install it, or remove it from the Docker config"
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| format!("{program} get: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let said = format!("{} {}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
            if said.contains(NOT_FOUND) {
                return Ok(None);
            }
            return Err(format!("{program} get failed for {server} ({}): {}", out.status, said.trim()));
        }
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("{program} get did not answer with credentials JSON: {e}"))?;
        let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Ok(Some((field("Username"), field("Secret"))))
    }
}

/// The credentials the Docker config gives `host`.
pub fn auth_from_docker_config(
    bytes: &[u8],
    host: &str,
    helpers: &dyn CredentialHelpers,
) -> Result<RegistryAuth, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let helper = v["credHelpers"].get(host).or_else(|| v.get("credsStore")).and_then(|h| h.as_str());
    if let Some(helper) = helper.filter(|h| !h.is_empty()) {
        // Docker asks helpers with the bare host; Docker Hub's entry is the one URL it knows.
        return Ok(match helpers.get(helper, host)? {
            // `<token>` marks an identity token (a registry refresh token) rather than a password.
            Some((user, secret)) if user == "<token>" => RegistryAuth::Bearer(secret),
            Some((user, secret)) if !user.is_empty() || !secret.is_empty() => RegistryAuth::Basic(user, secret),
            _ => RegistryAuth::Anonymous,
        });
    }
    let auths = v["auths"].as_object().cloned().unwrap_or_default();
    let entry = auths.iter().find(|(k, _)| {
        let k = k.trim_start_matches("https://").trim_start_matches("http://");
        k == host || k.split('/').next() == Some(host)
    });
    let Some((_, entry)) = entry else { return Ok(RegistryAuth::Anonymous) };
    if let Some(t) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Ok(RegistryAuth::Bearer(t.to_string()));
    }
    let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) else { return Ok(RegistryAuth::Anonymous) };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| format!("auths.{host}.auth is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| format!("auths.{host}.auth is not UTF-8"))?;
    let (user, pass) = text.split_once(':').ok_or_else(|| format!("auths.{host}.auth is not user:password"))?;
    Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a helper answers for a server: user and secret, or nothing.
    type Answer = Option<(&'static str, &'static str)>;

    /// Helpers that answer from a table of (helper, server, answer).
    struct Table(Vec<(&'static str, &'static str, Answer)>);

    impl CredentialHelpers for Table {
        fn get(&self, helper: &str, server: &str) -> Result<Option<(String, String)>, String> {
            self.0
                .iter()
                .find(|(h, s, _)| *h == helper && *s == server)
                .map(|(_, _, c)| c.map(|(u, p)| (u.to_string(), p.to_string())))
                .ok_or_else(|| format!("helper {helper} was not expected for {server}"))
        }
    }

    #[test]
    fn google_registries_take_the_callers_token() {
        for host in ["us-docker.pkg.dev", "europe-west4-docker.pkg.dev", "gcr.io", "eu.gcr.io"] {
            assert!(is_google_registry(host), "{host}");
            assert!(matches!(registry_auth(host, Some("ya29.t")).unwrap(),
                RegistryAuth::Basic(u, p) if u == GOOGLE_TOKEN_USER && p == "ya29.t"));
        }
        for host in ["127.0.0.1:5000", "docker.io", "pkg.dev.example.com", "notgcr.io"] {
            assert!(!is_google_registry(host), "{host}");
        }
    }

    #[test]
    fn docker_config_entries_become_credentials() {
        let none = Table(vec![]);
        let cfg = br#"{"auths": {"https://reg.example:5000": {"auth": "dXNlcjpwYTpzcw=="},
                                  "tok.example": {"identitytoken": "t0k"}}}"#;
        match auth_from_docker_config(cfg, "reg.example:5000", &none).unwrap() {
            RegistryAuth::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("user", "pa:ss")),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(auth_from_docker_config(cfg, "tok.example", &none).unwrap(), RegistryAuth::Bearer(t) if t == "t0k")
        );
        assert!(matches!(auth_from_docker_config(cfg, "other.example", &none).unwrap(), RegistryAuth::Anonymous));
        assert!(auth_from_docker_config(br#"{"auths": {"h": {"auth": "!!"}}}"#, "h", &none).is_err());
    }

    #[test]
    fn helpers_come_first_per_host_then_the_default_store_as_docker_reads_them() {
        let helpers = Table(vec![
            ("gcloud", "us-docker.pkg.dev", Some(("oauth2accesstoken", "from-gcloud"))),
            ("pass", "reg.example", Some(("ana", "from-pass"))),
            ("pass", "empty.example", None),
        ]);
        let cfg = br#"{"credHelpers": {"us-docker.pkg.dev": "gcloud"}, "credsStore": "pass",
                       "auths": {"reg.example": {"auth": "aWdub3JlZDppZ25vcmVk"}}}"#;
        let basic = |host: &str| match auth_from_docker_config(cfg, host, &helpers).unwrap() {
            RegistryAuth::Basic(u, p) => (u, p),
            other => panic!("{host}: {other:?}"),
        };
        assert_eq!(basic("us-docker.pkg.dev"), ("oauth2accesstoken".into(), "from-gcloud".into()));
        assert_eq!(basic("reg.example"), ("ana".into(), "from-pass".into()), "credsStore wins over auths");
        assert!(matches!(auth_from_docker_config(cfg, "empty.example", &helpers).unwrap(), RegistryAuth::Anonymous));
        assert!(auth_from_docker_config(cfg, "unlisted.example", &helpers).is_err(), "helper errors surface");
    }

    #[test]
    fn a_missing_helper_program_is_named() {
        let e = RunHelper.get("dcr-test-no-such-helper", "reg.example").unwrap_err();
        assert!(e.contains("docker-credential-dcr-test-no-such-helper") && e.contains("install it"), "{e}");
    }
}
