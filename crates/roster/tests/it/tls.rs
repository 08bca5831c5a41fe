//! Native TLS on the public port: SCIM over HTTPS with a certificate from a test CA, and the
//! certificate reloaded from disk without a restart (a broken pair is refused and the previous
//! certificate kept).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::harness::{Req, Server, Spec, USER_SCHEMA, poll};

/// A test certificate authority the client trusts.
fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "Roster test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

/// A server certificate for `localhost`/127.0.0.1 signed by `ca`: (certificate PEM, key PEM, DER).
fn server_cert(ca: &CertifiedIssuer<'static, KeyPair>, cn: &str) -> (String, String, Vec<u8>) {
    let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("server key");
    let cert = p.signed_by(&key, ca).expect("signed server certificate");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Replaces a file atomically, the way a certificate manager should (write, then rename).
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// One HTTPS request on a new connection: (the leaf certificate served, status, body).
fn https(
    addr: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (Vec<u8>, u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).expect("trust the test CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("server name").to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("TLS handshake and request");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw); // a close without close_notify still leaves the response
    let leaf = tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (leaf, status, body)
}

fn reloads(srv: &Server, result: &str) -> u64 {
    let text = Req::new("GET", format!("{}/metrics", srv.ops)).send(&crate::harness::agent()).text;
    let prefix = format!("roster_tls_certificate_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn scim_over_https_and_the_certificate_reloads_without_a_restart() {
    let ca = test_ca();
    let (cert1, key1, der1) = server_cert(&ca, "first");
    let mut spec = Spec::fresh();
    let (cert_path, key_path) = (spec.dir.path().join("tls.crt"), spec.dir.path().join("tls.key"));
    replace(&cert_path, &cert1);
    replace(&key_path, &key1);
    spec.env.extend([
        ("ROSTER_TLS_CERT_FILE".to_owned(), cert_path.display().to_string()),
        ("ROSTER_TLS_KEY_FILE".to_owned(), key_path.display().to_string()),
        ("ROSTER_TLS_RELOAD_SECS".to_owned(), "1".to_owned()),
    ]);
    let srv = Server::launch(spec);
    let addr = srv.startup.public_addr.clone();
    let tenant = srv.tenant();
    let base = format!("/scim/v2/accounts/{}", tenant.account_id);

    // SCIM works over HTTPS with the first certificate.
    let (leaf, status, body) = https(&addr, &ca, "GET", &format!("{base}/Users"), &tenant.token, None);
    assert_eq!((status, leaf == der1), (200, true), "GET over TLS with the first certificate: {body}");
    let user = json!({"schemas": [USER_SCHEMA], "userName": "tls@contoso.com"});
    let (_, status, body) = https(&addr, &ca, "POST", &format!("{base}/Users"), &tenant.token, Some(&user));
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("created user");
    assert!(
        created["meta"]["location"].as_str().is_some_and(|l| l.starts_with("https://")),
        "meta.location uses https when TLS is on and --public-url is unset: {created}"
    );
    // Plain HTTP is not served on the TLS port.
    let plain = Req::new("GET", format!("http://{addr}{base}/Users"))
        .header("Authorization", &format!("Bearer {}", tenant.token))
        .try_send(&crate::harness::agent());
    assert!(plain.map(|r| r.status != 200).unwrap_or(true), "plain HTTP must not reach SCIM on the TLS port");

    // A half-finished renewal (a new certificate with the old key) is refused; the first stays.
    let (cert2, key2, der2) = server_cert(&ca, "second");
    replace(&cert_path, &cert2);
    let refused = poll(Duration::from_secs(15), || (reloads(&srv, "error") >= 1).then_some(()));
    assert!(
        refused.is_some(),
        "the mismatched pair is reported in roster_tls_certificate_reloads_total{{result=\"error\"}}"
    );
    let (leaf, status, _) = https(&addr, &ca, "GET", &format!("{base}/Users"), &tenant.token, None);
    assert_eq!((status, leaf == der1), (200, true), "the previous certificate is still served");

    // The completed renewal is picked up by new connections.
    replace(&key_path, &key2);
    let served = poll(Duration::from_secs(15), || {
        let (leaf, status, _) = https(&addr, &ca, "GET", &format!("{base}/Users"), &tenant.token, None);
        (status == 200 && leaf == der2).then_some(())
    });
    assert!(served.is_some(), "a new connection gets the renewed certificate within a few reload intervals");
    assert!(reloads(&srv, "ok") >= 1, "the reload is counted");
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start_naming_the_files() {
    let ca = test_ca();
    let (cert, _, _) = server_cert(&ca, "cert");
    let (_, other_key, _) = server_cert(&ca, "other");
    let dir = crate::harness::TestDir::new("tls-bad");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    replace(&cert_path, &cert);
    replace(&key_path, &other_key);
    let db = dir.sqlite_url("roster.db");
    let (c, k) = (cert_path.display().to_string(), key_path.display().to_string());
    let args = ["serve", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--tls-cert", &c, "--tls-key", &k];
    let out = crate::harness::run_roster_with(&args, &[("ROSTER_DATABASE_URL", db.as_str())], Duration::from_secs(60));
    assert!(!out.status.success(), "a key that does not match the certificate must stop the start");
    assert!(
        out.stderr.contains("tls.crt") && out.stderr.contains("tls.key"),
        "the error names the files:\n{}",
        out.stderr
    );
    assert!(!out.stdout.contains("roster: ready"), "{}", out.stdout);
}
