//! TLS on both listeners: certificates the test issues (rcgen), reqwest over https, tonic's
//! own TLS client for gRPC, a raw rustls client to read which certificate is served, and the
//! files replaced under a running server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_api::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use keel_api::proto::{ServerLiveRequest, ServerReadyRequest};
use keel_api::tls::{TlsCerts, TlsConfig};
use keel_api::{BoundServer, ServeConfig, Services};
use keel_registry::Registry;
use keel_runtime::ModelOptions;
use keel_serving::{InferenceService, ModelRepository};
use keel_store::Store;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::support::{bc_request, fixture, push};

/// A CA the clients trust, issuing server certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate and its key, PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    fn issue(&self, serial: u64) -> Leaf {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("keel test server {serial}"));
        let cert = params.signed_by(&key, &self.issuer).expect("server certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Writes `leaf` where the server reads it: each file replaced by a rename, as a deployment
/// tool (or cert-manager) does, so the server never reads half a file.
fn install(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    replace(&cert, leaf.cert_pem.as_bytes());
    replace(&key, leaf.key_pem.as_bytes());
    (cert, key)
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A running TLS server (one fixture model); stops when dropped.
struct TlsServer {
    http: SocketAddr,
    grpc: SocketAddr,
    certs: Arc<TlsCerts>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TlsServer {
    async fn start(tls: TlsConfig) -> TlsServer {
        let _ = keel_api::prometheus();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
            .await
            .expect("store");
        let registry = Registry::open(store, &dir.path().join("artifacts").display().to_string()).expect("registry");
        push(&registry, "bc-lr", &fixture("bc-lr")).await;
        let service = InferenceService::new(ModelRepository::new(registry, ModelOptions::default()));
        let server = BoundServer::bind(ServeConfig {
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes: 1024 * 1024,
            tls: Some(tls),
        })
        .await
        .expect("bind");
        let (http, grpc) = (server.http_addr().expect("addr"), server.grpc_addr().expect("addr"));
        let certs = server.tls().expect("TLS is on").clone();
        let shutdown = CancellationToken::new();
        let services = Services {
            inference: service.clone(),
            experiments: None,
            extra_rest: None,
            extra_grpc: None,
            access: keel_api::ServerAccess::default(),
        };
        let task = tokio::spawn(server.run(services, shutdown.clone()));
        let failures = service.load_all().await;
        assert!(failures.is_empty(), "models failed to load: {failures:?}");
        TlsServer {
            http,
            grpc,
            certs,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn https(&self, path: &str) -> String {
        format!("https://{}{}", self.http, path)
    }
}

fn trusting(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA PEM")])
        .build()
        .expect("client")
}

async fn grpc_client(
    ca: &Ca,
    addr: SocketAddr,
) -> Result<GrpcInferenceServiceClient<tonic::transport::Channel>, String> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(GrpcInferenceServiceClient::new(channel))
}

/// The certificate a new connection to `addr` is served, read by a rustls client that trusts
/// `ca`, and the ALPN protocol agreed when offering `alpn`.
async fn served(ca: &Ca, addr: SocketAddr, alpn: &[u8]) -> (CertificateDer<'static>, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("CA PEM"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let conn = tls.get_ref().1;
    let chain = conn.peer_certificates().expect("a certificate");
    (chain[0].clone().into_owned(), conn.alpn_protocol().map(<[u8]>::to_vec))
}

/// Waits (bounded) until a new connection to `addr` is served `want`.
async fn until_served(ca: &Ca, addr: SocketAddr, want: &CertificateDer<'static>, what: &str) {
    for _ in 0..200 {
        if &served(ca, addr, b"h2").await.0 == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: the new certificate was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_serve_tls_and_refuse_plain_connections() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("keel test CA");
    let leaf = ca.issue(1);
    let (cert, key) = install(files.path(), &leaf);
    let server = TlsServer::start(TlsConfig::new(cert, key)).await;

    // REST over https, with a client that trusts only the test's CA.
    let client = trusting(&ca);
    let live = client.get(server.https("/v2/health/live")).send().await.expect("https");
    assert_eq!(live.status(), 200);
    let infer = client
        .post(server.https("/v2/models/bc-lr/infer"))
        .json(&bc_request(2))
        .send()
        .await
        .expect("https infer");
    assert_eq!(infer.status(), 200);
    let body: serde_json::Value = infer.json().await.expect("json");
    assert_eq!(body["model_name"], "bc-lr");
    assert_eq!(body["outputs"][0]["shape"][0], 2);

    // gRPC with tonic's own TLS client (which insists on ALPN h2).
    let mut grpc = grpc_client(&ca, server.grpc).await.expect("gRPC over TLS");
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );
    assert!(
        grpc.server_ready(ServerReadyRequest {})
            .await
            .expect("ready")
            .into_inner()
            .ready
    );

    // Each listener agrees its own protocol: h2 for gRPC, HTTP/1.1 for REST.
    assert_eq!(
        served(&ca, server.grpc, b"h2").await,
        (leaf.der.clone(), Some(b"h2".to_vec()))
    );
    assert_eq!(
        served(&ca, server.http, b"http/1.1").await,
        (leaf.der.clone(), Some(b"http/1.1".to_vec()))
    );

    // Plain HTTP on the REST port is told to use https; plain gRPC on the gRPC port and a
    // client that does not trust the certificate fail; the server serves on.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v2/health/live", server.http))
        .send()
        .await
        .expect("plain HTTP gets an answer");
    assert_eq!(plain.status(), 400);
    let says: serde_json::Value = plain.json().await.expect("json");
    assert!(
        says["error"].as_str().expect("error").contains("use https://"),
        "{says}"
    );
    let plain_grpc = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc)).await;
    if let Ok(mut c) = plain_grpc {
        assert!(
            c.server_live(ServerLiveRequest {}).await.is_err(),
            "plain gRPC got an answer"
        );
    }
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(Ca::new("another CA").pem.as_bytes()).expect("PEM")])
        .build()
        .expect("client");
    let refused = untrusting.get(server.https("/v2/health/live")).send().await;
    assert!(refused.is_err(), "an untrusted certificate was accepted: {refused:?}");
    assert_eq!(
        trusting(&ca)
            .get(server.https("/v2/health/live"))
            .send()
            .await
            .expect("https")
            .status(),
        200
    );
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );

    // Shutdown drains and returns cleanly.
    server.shutdown.cancel();
    let mut server = server;
    (&mut server.task).await.expect("join").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stuck_in_its_handshake_does_not_hold_up_others() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("keel test CA");
    let (cert, key) = install(files.path(), &ca.issue(7));
    let server = TlsServer::start(TlsConfig::new(cert, key)).await;

    // Connections that say nothing, and one that sends half a ClientHello, on both ports.
    let mut stuck = Vec::new();
    for addr in [server.http, server.grpc] {
        for _ in 0..8 {
            stuck.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
        half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .expect("write");
        stuck.push(half);
    }
    // Meanwhile new clients complete their handshakes and get answers, well before the stuck
    // handshakes time out (a listener that handshakes in its accept loop would make them wait
    // for those first).
    let within = keel_api::tls::HANDSHAKE_TIMEOUT - Duration::from_secs(1);
    let answers = async {
        for path in ["/v2/health/live", "/v2/health/ready"] {
            let fresh = trusting(&ca);
            assert_eq!(fresh.get(server.https(path)).send().await.expect("https").status(), 200);
        }
        let mut grpc = grpc_client(&ca, server.grpc).await.expect("gRPC over TLS");
        assert!(
            grpc.server_live(ServerLiveRequest {})
                .await
                .expect("live")
                .into_inner()
                .live
        );
    };
    tokio::time::timeout(within, answers)
        .await
        .expect("new clients were held up by the stuck handshakes");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_change_and_a_bad_replacement_keeps_the_old_one() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("keel test CA");
    let first = ca.issue(100);
    let (cert, key) = install(files.path(), &first);
    let server = TlsServer::start(TlsConfig {
        poll: Duration::from_millis(50),
        ..TlsConfig::new(&cert, &key)
    })
    .await;
    assert_eq!(served(&ca, server.grpc, b"h2").await.0, first.der);
    // A gRPC connection opened before the reload, and a REST keep-alive one.
    let mut grpc = grpc_client(&ca, server.grpc).await.expect("gRPC over TLS");
    let rest = trusting(&ca);
    assert_eq!(
        rest.get(server.https("/v2/health/live"))
            .send()
            .await
            .expect("https")
            .status(),
        200
    );

    // A new certificate: new connections on both ports get it; the old ones carry on.
    let second = ca.issue(200);
    install(files.path(), &second);
    until_served(&ca, server.grpc, &second.der, "file change").await;
    assert_eq!(served(&ca, server.http, b"http/1.1").await.0, second.der);
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .expect("old connection")
            .into_inner()
            .live
    );
    assert_eq!(
        rest.get(server.https("/v2/health/live"))
            .send()
            .await
            .expect("https")
            .status(),
        200
    );
    let mut fresh = grpc_client(&ca, server.grpc).await.expect("new gRPC connection");
    assert!(
        fresh
            .server_live(ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );

    // Bad replacements: the reload fails with the file named, no key bytes in the message,
    // and the certificate served does not change.
    let third = ca.issue(300);
    // Each case is written over the previous one (certificate first, then key), and no
    // mixture of two consecutive cases is a valid pair, so the poller never sees one either.
    let garbage_key: &[u8] = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let cases: [(&str, &[u8], &[u8], &str); 4] = [
        (
            "garbage certificate",
            b"not a certificate",
            first.key_pem.as_bytes(),
            "server.crt",
        ),
        ("garbage key", third.cert_pem.as_bytes(), garbage_key, "server.key"),
        (
            "another certificate's key",
            third.cert_pem.as_bytes(),
            first.key_pem.as_bytes(),
            "does not belong",
        ),
        (
            "files swapped",
            third.key_pem.as_bytes(),
            third.cert_pem.as_bytes(),
            "swapped",
        ),
    ];
    for (what, cert_pem, key_pem, says) in cases {
        replace(&cert, cert_pem);
        replace(&key, key_pem);
        let e = server.certs.reload().expect_err(what).to_string();
        assert!(e.contains(says), "{what}: {e}");
        for pem in [&first.key_pem, &third.key_pem] {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(!e.contains(&body[..16]), "{what}: the message quotes a key: {e}");
        }
        assert_eq!(server.certs.chain()[0], second.der, "{what}");
        assert_eq!(served(&ca, server.grpc, b"h2").await.0, second.der, "{what}");
    }
    // The poller saw those files too and kept serving; a good pair after them is picked up.
    install(files.path(), &third);
    until_served(&ca, server.grpc, &third.der, "a good pair after bad ones").await;
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .expect("old connection")
            .into_inner()
            .live
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    // SIGHUP's disposition is process-wide: take it before anything is sent, so the signal can
    // never end the test process, whichever server's reloader is listening.
    let _hold = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP");
    let files = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("keel test CA");
    let first = ca.issue(1000);
    let (cert, key) = install(files.path(), &first);
    // Polling off in practice: only SIGHUP can reload.
    let server = TlsServer::start(TlsConfig {
        poll: Duration::from_secs(3600),
        ..TlsConfig::new(&cert, &key)
    })
    .await;
    let second = ca.issue(2000);
    install(files.path(), &second);
    for _ in 0..100 {
        let kill = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        tokio::time::sleep(Duration::from_millis(50)).await;
        if served(&ca, server.http, b"http/1.1").await.0 == second.der {
            assert_eq!(served(&ca, server.grpc, b"h2").await.0, second.der);
            return;
        }
    }
    panic!("SIGHUP never reloaded the certificate");
}
