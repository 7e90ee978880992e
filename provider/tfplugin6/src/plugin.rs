//! go-plugin's side of the process contract: magic-cookie check, protocol-version negotiation, the
//! handshake line on stdout, AutoMTLS with the host's certificate pinned, and the gRPC services a
//! host expects besides the provider (health and controller).

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::proto;
use crate::provider::Provider;
use crate::server::ProviderService;

/// The environment variable and value Terraform sets so a provider knows it was launched as a
/// plugin (go-plugin's "magic cookie"); it is a sanity check, not a security measure.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// go-plugin's own protocol version (the first field of the handshake line).
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol major version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "This binary is a plugin. These are not meant to be executed directly. Please execute the \
         program that consumes these plugins, which will load any plugins automatically"
    )]
    NotLaunchedByTerraform,
    #[error("Incompatible API version with plugin. Plugin version: {PROTOCOL_VERSION}, Client versions: {0}")]
    IncompatibleVersion(String),
    #[error("invalid {name}: {reason}")]
    BadEnvironment { name: &'static str, reason: String },
    #[error("could not listen on 127.0.0.1 ports {min}-{max}: {source}")]
    Listen { min: u16, max: u16, source: std::io::Error },
    #[error("could not set up TLS: {0}")]
    Tls(String),
    #[error("could not write the handshake to stdout: {0}")]
    Handshake(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// True when the process was started by Terraform (the magic cookie is set).
pub fn launched_by_terraform() -> bool {
    std::env::var(MAGIC_COOKIE_KEY).as_deref() == Ok(MAGIC_COOKIE_VALUE)
}

/// Serves `provider` to the Terraform process that launched us, until Terraform shuts us down.
pub async fn serve(provider: Arc<dyn Provider>) -> Result<(), ServeError> {
    if !launched_by_terraform() {
        return Err(ServeError::NotLaunchedByTerraform);
    }
    negotiate_version(std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref())?;

    let listener = bind().await?;
    let addr = listener.local_addr().map_err(|e| ServeError::Listen { min: 0, max: 0, source: e })?;

    let (tls, cert_b64) = match std::env::var("PLUGIN_CLIENT_CERT") {
        Ok(pem) if !pem.is_empty() => {
            let (cfg, cert) = auto_mtls(&pem)?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(cert),
            )
        }
        _ => (None, String::new()),
    };

    let shutdown = Arc::new(Notify::new());
    let incoming = accept_loop(listener, tls);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // go-plugin's host checks the service named "plugin".
    health_reporter.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;

    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(proto::plugin::grpc_controller_server::GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(
            proto::provider_server::ProviderServer::new(ProviderService::new(provider))
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        );

    write_handshake(&addr, &cert_b64)?;
    tracing::debug!(%addr, "plugin server listening");

    let stop = shutdown.clone();
    server
        .serve_with_incoming_shutdown(incoming, async move {
            stop.notified().await;
            // Terraform closes its connection right after Shutdown; do not wait forever if not.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                std::process::exit(0);
            });
        })
        .await?;
    Ok(())
}

fn negotiate_version(offered: Option<&str>) -> Result<(), ServeError> {
    let Some(offered) = offered.filter(|s| !s.trim().is_empty()) else {
        // Old hosts do not say; go-plugin then uses the plugin's default, which is ours.
        return Ok(());
    };
    if offered.split(',').any(|v| v.trim().parse::<u32>() == Ok(PROTOCOL_VERSION)) {
        Ok(())
    } else {
        Err(ServeError::IncompatibleVersion(offered.to_string()))
    }
}

fn port_env(name: &'static str, default: u16) -> Result<u16, ServeError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            v.parse().map_err(|_| ServeError::BadEnvironment { name, reason: format!("{v:?} is not a port number") })
        }
        _ => Ok(default),
    }
}

async fn bind() -> Result<TcpListener, ServeError> {
    let min = port_env("PLUGIN_MIN_PORT", 0)?;
    let max = port_env("PLUGIN_MAX_PORT", 0)?;
    if min == 0 && max == 0 {
        return TcpListener::bind("127.0.0.1:0").await.map_err(|source| ServeError::Listen { min, max, source });
    }
    let mut last = None;
    for port in min..=max.max(min) {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(ServeError::Listen { min, max, source: last.unwrap_or_else(|| std::io::Error::other("empty port range")) })
}

fn write_handshake(addr: &SocketAddr, cert_b64: &str) -> Result<(), ServeError> {
    let line = format!("{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|tcp|{addr}|grpc|{cert_b64}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).and_then(|_| out.flush()).map_err(ServeError::Handshake)
}

/// Builds the TLS server config: a fresh self-signed certificate for "localhost" (announced in the
/// handshake, which is how the host learns to trust it) and a client verifier that accepts exactly
/// the certificate the host put in `PLUGIN_CLIENT_CERT` and nothing else.
fn auto_mtls(client_pem: &str) -> Result<(rustls::ServerConfig, Vec<u8>), ServeError> {
    let tls_err = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let client_cert = CertificateDer::from_pem_slice(client_pem.as_bytes())
        .map_err(|e| ServeError::BadEnvironment { name: "PLUGIN_CLIENT_CERT", reason: e.to_string() })?
        .into_owned();

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| tls_err(&e))?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| tls_err(&e))?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "HashiCorp");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    // go-plugin's host adds this certificate to its root pool, so it is its own CA.
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(30);
    params.not_after = now + time::Duration::days(365 * 30);
    let cert = params.self_signed(&key).map_err(|e| tls_err(&e))?;
    let cert_der = cert.der().to_vec();

    let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedClientCert { cert: client_cert, crypto: crypto.clone() });
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| tls_err(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((cfg, cert_der))
}

/// Accepts exactly one client certificate, byte for byte. go-plugin's host certificate is a
/// self-signed CA (P-521), which ordinary WebPKI verification rejects as an end entity; pinning is
/// both simpler and stricter.
#[derive(Debug)]
struct PinnedClientCert {
    cert: CertificateDer<'static>,
    crypto: Arc<CryptoProvider>,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.crypto.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.crypto.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.crypto.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection from the host, with or without TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts connections, completing each TLS handshake on its own task so one slow or hostile
/// client cannot hold up the next.
fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> ReceiverStream<Result<Conn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            // Without TCP_NODELAY a response's last small write waits for the host's delayed ACK
            // (40 ms on Linux): every RPC, and Shutdown's reply, which the host waits for before
            // it closes the connection and the process can exit. Go sets it on every TCP socket.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let conn = match tls {
                    None => Conn::Plain(stream),
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => Conn::Tls(Box::new(s)),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "TLS handshake with the host failed");
                            return;
                        }
                    },
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

struct Controller {
    shutdown: Arc<Notify>,
}

#[tonic::async_trait]
impl proto::plugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _: tonic::Request<proto::plugin::Empty>,
    ) -> Result<tonic::Response<proto::plugin::Empty>, tonic::Status> {
        self.shutdown.notify_one();
        Ok(tonic::Response::new(proto::plugin::Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_needs_six() {
        assert!(negotiate_version(Some("5,6")).is_ok());
        assert!(negotiate_version(None).is_ok());
        assert!(matches!(negotiate_version(Some("5")), Err(ServeError::IncompatibleVersion(_))));
    }

    #[test]
    fn pinned_verifier_accepts_only_the_pinned_certificate() {
        let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let v = PinnedClientCert { cert: CertificateDer::from(vec![1, 2, 3]), crypto };
        let now = UnixTime::now();
        assert!(v.verify_client_cert(&CertificateDer::from(vec![1, 2, 3]), &[], now).is_ok());
        assert!(v.verify_client_cert(&CertificateDer::from(vec![1, 2, 4]), &[], now).is_err());
    }

    #[test]
    fn auto_mtls_builds_a_localhost_certificate_with_h2() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let client = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let (cfg, der) = auto_mtls(&client.pem()).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!der.is_empty());
    }
}
