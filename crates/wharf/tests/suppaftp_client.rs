//! FTPS with a Rust client (suppaftp on tokio-rustls): explicit and implicit TLS against a
//! real `wharf serve`, over IPv4 and IPv6, verifying the generated certificate, comparing the
//! SHA-256 of every transfer, and resuming a download with REST.

// Test set-up: any failure should fail the test, with its panic message.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use tokio::io::AsyncReadExt;

const PASSWORD: &str = "suppa-pass-123";

/// A port free on both 127.0.0.1 and ::1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        if TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 and ::1");
}

struct Server {
    dir: tempfile::TempDir,
    child: Child,
    explicit: u16,
    implicit: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wharf(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("--config").arg(config);
    cmd
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("init")
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let config_path = dir.path().join("wharf.toml");
    let (ssh, explicit, implicit) = (free_port(), free_port(), free_port());
    let config = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("address = \"::\"", "address = [\"127.0.0.1\", \"::1\"]")
        .replace("port = 2222", &format!("port = {ssh}"))
        .replace("port = 2121", &format!("port = {explicit}"))
        .replace("port = 2990", &format!("port = {implicit}"));
    std::fs::write(&config_path, config).unwrap();
    let mut add = wharf(&config_path)
        .args(["account", "add", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(add.wait().unwrap().success());
    std::fs::create_dir_all(dir.path().join("wharf-data/homes/alice")).unwrap();
    let child = wharf(&config_path)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", implicit)).is_err() {
        assert!(Instant::now() < deadline, "wharf did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        dir,
        child,
        explicit,
        implicit,
    }
}

/// A connector that trusts only the certificate the server generated at first run.
fn connector(certificate: PathBuf) -> AsyncRustlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certificate).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

async fn round_trip(ftp: &mut AsyncRustlsFtpStream, ipv6: bool, name: &str, data: &[u8]) {
    // PASV is IPv4-only (RFC 959); EPSV serves both.
    if ipv6 {
        ftp.set_mode(suppaftp::Mode::ExtendedPassive);
    }
    ftp.transfer_type(FileType::Binary).await.unwrap();
    let sent = ftp.put_file(name, &mut Cursor::new(data)).await.unwrap();
    assert_eq!(sent, data.len() as u64);
    assert_eq!(ftp.size(name).await.unwrap(), data.len());
    let mut download = ftp.retr_as_stream(name).await.unwrap();
    let mut back = Vec::new();
    download.read_to_end(&mut back).await.unwrap();
    download.finish().await.unwrap();
    assert_eq!(sha256(&back), sha256(data));
    // Resume a download part-way (REST + RETR).
    ftp.resume_transfer(700_000).await.unwrap();
    let mut download = ftp.retr_as_stream(name).await.unwrap();
    let mut tail = Vec::new();
    download.read_to_end(&mut tail).await.unwrap();
    download.finish().await.unwrap();
    assert_eq!(tail, data[700_000..]);
    assert!(ftp.nlst(None).await.unwrap().iter().any(|n| n == name));
    // Uploads in a row resume with tickets the client already holds.
    for i in 0..5 {
        let part = format!("{name}.{i}");
        let chunk = &data[i * 1000..(i + 1) * 1000];
        ftp.put_file(&part, &mut Cursor::new(chunk)).await.unwrap();
        assert_eq!(ftp.size(&part).await.unwrap(), 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_and_implicit_ftps_with_suppaftp() {
    let server = start();
    let certificate = server.dir.path().join("wharf-data/tls/certificate.pem");
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for host in ["127.0.0.1", "::1"] {
        let ip: std::net::IpAddr = host.parse().unwrap();
        let explicit = SocketAddr::new(ip, server.explicit);
        let ftp = AsyncRustlsFtpStream::connect(explicit).await.unwrap();
        let mut ftp = ftp
            .into_secure(connector(certificate.clone()), "localhost")
            .await
            .unwrap();
        ftp.login("alice", PASSWORD).await.unwrap();
        round_trip(
            &mut ftp,
            ip.is_ipv6(),
            &format!("explicit-{}.bin", ip.is_ipv6()),
            &data,
        )
        .await;
        ftp.quit().await.unwrap();

        let implicit = SocketAddr::new(ip, server.implicit);
        let mut ftp = AsyncRustlsFtpStream::connect_secure_implicit(
            implicit,
            connector(certificate.clone()),
            "localhost",
        )
        .await
        .unwrap();
        ftp.login("alice", PASSWORD).await.unwrap();
        ftp.custom_command("PBSZ 0", &[suppaftp::Status::CommandOk])
            .await
            .unwrap();
        ftp.custom_command("PROT P", &[suppaftp::Status::CommandOk])
            .await
            .unwrap();
        round_trip(
            &mut ftp,
            ip.is_ipv6(),
            &format!("implicit-{}.bin", ip.is_ipv6()),
            &data,
        )
        .await;
        ftp.quit().await.unwrap();
    }
    let stored = std::fs::read(
        server
            .dir
            .path()
            .join("wharf-data/homes/alice/implicit-true.bin"),
    )
    .unwrap();
    assert_eq!(sha256(&stored), sha256(&data));
}
