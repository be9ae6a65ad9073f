//! First run: a working `wharf.toml` and data folder from nothing.
//!
//! Creates the data folder (0700), Ed25519 and ECDSA P-256 host keys (0600), a self-signed
//! certificate for the TLS services, the SQLite store, a default `users` group (home folders
//! under the data folder, created at first login, full access inside them) and one Manager
//! administrator whose random password is printed once and stored only as a hash.
//!
//! With `--store postgres://…` the node joins a cluster's store instead: the group and the
//! administrator are made only by the first node to initialise it, so a second node's
//! `init` changes nothing shared.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::{Algorithm, EcdsaCurve, LineEnding};
use wharf_core::Rule;
use wharf_store::{AdminRecord, GroupRecord, Store};

/// The default configuration, written by `wharf init` and the first `wharf serve`.
pub const DEFAULT_CONFIG: &str = r#"# Wharf configuration. Reference: docs/configuration.md
# Accounts and groups live in the store: manage them with `wharf account` / `wharf group`.

[server]
# Node name written into every audit record.
name = "wharf-1"
# Data folder: store, keys, certificate, audit file, default home folders.
data_dir = "wharf-data"

[store]
# SQLite file (relative to this file's folder).
url = "sqlite:wharf-data/wharf.db"

[audit]
# Every audit record is also appended to this JSON-lines file ("" to disable).
jsonl = "wharf-data/audit.jsonl"

[tls]
# Certificate for the TLS services (FTPS, HTTPS, Manager). Replace with your own PEM files.
certificate = "wharf-data/tls/certificate.pem"
key = "wharf-data/tls/key.pem"

[[service]]
name = "ssh"
type = "ssh"                  # SFTP and SCP
address = "::"                # IPv4 and IPv6; or a list such as ["0.0.0.0", "::"]
port = 2222
host_keys = ["wharf-data/keys/ssh_host_ed25519_key", "wharf-data/keys/ssh_host_ecdsa_key"]
idle_timeout = 600            # seconds
login_grace_time = 120        # seconds to authenticate
max_connections = 256
max_per_ip = 20               # connections at once from one address
max_auth_tries = 6
# banner = "Authorised use only."
# kex = ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"]
# ciphers = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]
# macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]
# host_key_algorithms = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"]

[[service]]
name = "ftp"
type = "ftp"                  # FTP with explicit TLS (AUTH TLS)
address = "::"
port = 2121
tls = "required"              # "required": no login and no data in the clear; "optional"; "off"
require_tls_session_reuse = true  # a TLS data connection must resume the control connection's session
idle_timeout = 600
login_grace_time = 120
data_timeout = 60             # seconds to wait for a data connection
max_connections = 256
max_per_ip = 20
active_mode = true            # PORT/EPRT, to the client's own address only
# passive_ports = [50000, 50099]
# passive_address = "203.0.113.10"  # IPv4 announced in PASV replies when behind NAT

[[service]]
name = "ftps"
type = "ftps-implicit"        # TLS from the first byte
address = "::"
port = 2990
idle_timeout = 600
login_grace_time = 120
max_connections = 256
max_per_ip = 20

[[service]]
name = "https"
type = "https"                # web client at /, REST API at /api/v1/ (OpenAPI: /api/v1/openapi.json), WebDAV at /dav/
address = "::"
port = 8443
max_connections = 256
max_per_ip = 20
max_upload_size = 10737418240 # bytes
session_timeout = 900         # seconds a logged-in client may stay idle
header_timeout = 30           # seconds to send request headers (slow clients are cut)
body_timeout = 60             # seconds a request body may stall

[[service]]
name = "manager"
type = "manager"              # administrators' web console at /, admin API at /api/v1/
address = "::"
port = 9443
max_connections = 64
max_per_ip = 16
session_timeout = 900         # seconds an administrator's browser session may stay unused
# allow_from = ["127.0.0.1", "::1", "10.0.0.0/8"]  # the networks the Manager is open to
"#;

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

fn host_key(path: &Path, algorithm: Algorithm) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let key =
        PrivateKey::random(&mut rand::rng(), algorithm).context("cannot generate host key")?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode host key")?;
    write_private(path, pem.as_bytes())?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode public key")?;
    fs::write(path.with_extension("pub"), format!("{public}\n"))?;
    Ok(())
}

fn certificate(dir: &Path) -> Result<()> {
    let cert_path = dir.join("certificate.pem");
    if cert_path.exists() {
        return Ok(());
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).context("cannot generate certificate")?;
    write_private(
        &dir.join("key.pem"),
        certified.signing_key.serialize_pem().as_bytes(),
    )?;
    fs::write(&cert_path, certified.cert.pem())?;
    Ok(())
}

/// Creates `dir/wharf.toml` and `dir/wharf-data/`; refuses to overwrite a configuration.
/// Returns the configuration path and, when an administrator was created, its password.
/// What `wharf init` may be told besides the folder.
#[derive(Debug, Default)]
pub struct InitOptions {
    /// A store URL other than the default SQLite file.
    pub store: Option<String>,
    /// The store's password spec (`env:NAME` or `file:PATH`).
    pub store_password: Option<String>,
    /// The node's name.
    pub node: Option<String>,
}

impl InitOptions {
    /// The default configuration with these options written in.
    fn config_text(&self) -> Result<String> {
        let mut text = DEFAULT_CONFIG.to_owned();
        if let Some(node) = &self.node {
            if node.is_empty()
                || !node
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("--node {node:?}: use letters, digits, '-', '_' and '.'");
            }
            text = text.replacen("name = \"wharf-1\"", &format!("name = \"{node}\""), 1);
        }
        if let Some(url) = &self.store {
            wharf_store::check_url(url).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
            let mut section = format!(
                "# Shared by every node of the cluster.\nurl = {}\n",
                toml_string(url)
            );
            if let Some(spec) = &self.store_password {
                if !(spec.starts_with("env:") || spec.starts_with("file:")) {
                    bail!("--store-password: give it as env:NAME or file:PATH, never literally");
                }
                section.push_str(&format!("password = {}\n", toml_string(spec)));
            }
            text = text.replacen(
                "# SQLite file (relative to this file's folder).\nurl = \"sqlite:wharf-data/wharf.db\"\n",
                &section,
                1,
            );
        }
        Ok(text)
    }

    async fn open_store(&self, dir: &Path, data: &Path) -> Result<Store> {
        let Some(url) = &self.store else {
            return Ok(Store::open_sqlite(&data.join("wharf.db")).await?);
        };
        let password = match &self.store_password {
            Some(spec) => Some(crate::config::auth::secret_at(dir, spec)?),
            None => None,
        };
        let connect = wharf_store::Connect {
            url: url.clone(),
            base: dir.to_owned(),
            password,
            ..Default::default()
        };
        Store::open(&connect)
            .await
            .with_context(|| format!("cannot open the store {}", wharf_store::redacted(url)))
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Creates the configuration and data folder in `dir` (see the module header).
pub async fn init(dir: &Path, options: &InitOptions) -> Result<(PathBuf, Option<String>)> {
    let config_text = options.config_text()?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join("wharf.toml");
    if config_path.exists() {
        bail!(
            "{} already exists; remove it first to start over",
            config_path.display()
        );
    }
    let data = dir.join("wharf-data");
    for sub in ["", "keys", "tls", "homes"] {
        let path = data.join(sub);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
    host_key(&data.join("keys/ssh_host_ed25519_key"), Algorithm::Ed25519)?;
    host_key(
        &data.join("keys/ssh_host_ecdsa_key"),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    )?;
    certificate(&data.join("tls"))?;
    let store = options.open_store(dir, &data).await?;
    let homes = fs::canonicalize(data.join("homes"))?;
    if store.group("users").await?.is_none() {
        store
            .create_group(&GroupRecord {
                name: "users".to_owned(),
                home_template: Some(format!("{}/${{USER}}", homes.display())),
                create_home: true,
                rules: vec![Rule::allow_all()],
                protocols: Vec::new(),
                upload_mode: None,
                addresses: Default::default(),
                require_second_factor: false,
                max_file_size: None,
                email: None,
            })
            .await?;
    }
    let mut admin_password = None;
    if store.admin_count().await? == 0 {
        let password = random_password();
        let hash = wharf_auth::hash_password(&password).map_err(anyhow::Error::msg)?;
        store
            .create_admin(&AdminRecord {
                name: "admin".to_owned(),
                password_hash: hash,
                role: "admin".to_owned(),
                enabled: true,
                second_factor: None,
                require_second_factor: false,
                // The store sets both times.
                created_us: 0,
                updated_us: 0,
            })
            .await?;
        admin_password = Some(password);
    }
    store.close().await;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&config_path)?;
    file.write_all(config_text.as_bytes())?;
    Ok((config_path, admin_password))
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..20)
        .map(|_| {
            let i = rand::random_range(0..ALPHABET.len());
            char::from(ALPHABET[i])
        })
        .collect()
}

/// Prints what `init` made, the administrator password once.
pub fn announce(config: &Path, admin_password: Option<&str>) {
    eprintln!(
        "Created {} and its data folder with working defaults.",
        config.display()
    );
    if let Some(password) = admin_password {
        eprintln!("Manager administrator: admin");
        eprintln!("Password (shown once, stored only as a hash): {password}");
    }
    // Where to open it: the generated file's Manager, from this machine.
    let managers: Vec<u16> = crate::config::Loaded::load(config)
        .map(|loaded| {
            loaded
                .config
                .services
                .iter()
                .filter(|s| matches!(s.kind, crate::config::ServiceKind::Manager { .. }))
                .map(|s| s.port())
                .collect()
        })
        .unwrap_or_default();
    for port in managers {
        eprintln!(
            "Manager: https://localhost:{port}/ (from another machine, this one's name or address; \
             the generated certificate is self-signed, so the browser asks before it trusts it)"
        );
    }
}
