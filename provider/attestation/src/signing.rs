//! An RS256 signing key with its public JWK: what an OIDC issuer (dcr's simulated attestation
//! issuer) needs. Keys are generated with aws-lc-rs and kept as PKCS#8.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    #[error("the stored signing key is not a valid RSA PKCS#8 key: {0}")]
    BadKey(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    pair: KeyPair,
}

impl SigningKey {
    /// A fresh RSA-2048 key; its kid is derived from the public key.
    pub fn generate() -> Result<SigningKey, SigningError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| SigningError::Generate(e.to_string()))?;
        let pkcs8 = pair.as_der().map_err(|e| SigningError::Generate(e.to_string()))?.as_ref().to_vec();
        SigningKey::from_pkcs8(&pkcs8)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SigningError> {
        let pair = KeyPair::from_pkcs8(pkcs8).map_err(|e| SigningError::BadKey(e.to_string()))?;
        let public = pair.public_key().as_ref().to_vec();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
        let kid = hex(&d.as_ref()[..10]);
        Ok(SigningKey { kid, pkcs8: pkcs8.to_vec(), pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key (PKCS#8 DER), for persisting it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (RS256, use = sig).
    pub fn jwk(&self) -> Jwk {
        let public = self.pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::RS256),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: URL_SAFE_NO_PAD.encode(n),
                e: URL_SAFE_NO_PAD.encode(e),
            }),
        }
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk()] }
    }

    /// Signs `claims` as an RS256 JWT with this key's kid.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        self.sign_as(claims, &self.kid)
    }

    /// Signs with a chosen kid (tests use this to forge tokens that claim another key).
    pub fn sign_as<T: Serialize>(&self, claims: &T, kid: &str) -> Result<String, SigningError> {
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD
                .encode(&self.pkcs8)
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("base64"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| SigningError::BadKey(e.to_string()))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| SigningError::Sign(e.to_string()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
