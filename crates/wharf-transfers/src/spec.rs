//! What locations and transfers are, once their configuration has been checked. Building
//! these (and reading their secrets) is the configuration loader's work; this module only
//! describes them and opens connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wharf_core::PathPattern;

use crate::cron::Schedule;
use crate::endpoint::{Endpoint, EndpointError};

/// One `[[location]]`.
pub struct Location {
    /// Unique name, in events (`attrs.location`).
    pub name: String,
    /// Where and how.
    pub kind: LocationKind,
    /// Longest wait for a connection and login.
    pub connect_timeout: Duration,
    /// Longest wait for any one answer once connected.
    pub idle_timeout: Duration,
    /// TCP keep-alive probes' idle time.
    pub keepalive: Duration,
    /// Why it cannot be used (a secret that could not be read when the configuration was
    /// loaded): every connection fails with this, and nothing else is affected.
    pub unusable: Option<String>,
}

/// How an SFTP server is logged into. At least one is set; a password and a key both set
/// means the server asks for both.
pub struct SftpLogin {
    /// The account's name on the server.
    pub username: String,
    /// Its password (read from `env:`/`file:`).
    pub password: Option<String>,
    /// Its private key.
    pub key: Option<Arc<russh::keys::PrivateKey>>,
}

/// Which host keys an SFTP server may show; any other is refused.
pub enum HostKeys {
    /// SHA-256 fingerprints as OpenSSH prints them (`SHA256:…`).
    Fingerprints(Vec<String>),
    /// An OpenSSH `known_hosts` file.
    KnownHosts(PathBuf),
}

/// How an FTP location's connection is protected.
pub enum FtpSecurity {
    /// `AUTH TLS` on the plain port, then `PROT P` (type `ftps`, the default).
    Explicit(crate::tls::Trust),
    /// TLS from the first byte (type `ftps` with `tls = "implicit"`).
    Implicit(crate::tls::Trust),
    /// None at all: the password and files in the clear (type `ftp`, only when named).
    Plain,
}

/// How a WebDAV server is logged into.
pub enum DavLogin {
    /// HTTP Basic.
    Basic {
        /// The account.
        username: String,
        /// Its password.
        password: String,
    },
    /// `Authorization: Bearer`.
    Bearer(String),
}

/// What a location is.
pub enum LocationKind {
    /// A folder on this machine: the root of a jail that no path leaves.
    Local {
        /// The folder.
        folder: PathBuf,
    },
    /// An SFTP server.
    Sftp {
        /// Host name, IPv4 or IPv6 literal.
        host: String,
        /// TCP port.
        port: u16,
        /// How to log in.
        login: SftpLogin,
        /// Which host keys are trusted.
        host_keys: HostKeys,
    },
    /// An FTP server (FTPS unless plain FTP was asked for).
    Ftp {
        /// Host name, IPv4 or IPv6 literal.
        host: String,
        /// TCP port.
        port: u16,
        /// The account's name on the server.
        username: String,
        /// Its password (read from `env:`/`file:`).
        password: String,
        /// TLS, and how the server is trusted.
        security: FtpSecurity,
    },
    /// A WebDAV server over HTTPS.
    Https {
        /// The base URL (`https://host:port/dav/`); paths are below it.
        url: url::Url,
        /// How to log in.
        login: DavLogin,
        /// How the server's certificate is trusted.
        trust: crate::tls::Trust,
    },
}

impl LocationKind {
    /// The type's name, as configured.
    pub fn type_name(&self) -> &'static str {
        match self {
            LocationKind::Local { .. } => "local",
            LocationKind::Sftp { .. } => "sftp",
            LocationKind::Ftp {
                security: FtpSecurity::Plain,
                ..
            } => "ftp",
            LocationKind::Ftp { .. } => "ftps",
            LocationKind::Https { .. } => "https",
        }
    }

    /// Where it is, for listings and events (never a secret).
    pub fn place(&self) -> String {
        match self {
            LocationKind::Local { folder } => folder.display().to_string(),
            LocationKind::Sftp {
                host, port, login, ..
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("sftp://{}@{host}:{port}", login.username)
            }
            LocationKind::Ftp {
                host,
                port,
                username,
                ..
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("{}://{username}@{host}:{port}", self.type_name())
            }
            LocationKind::Https { url, .. } => url.to_string(),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("name", &self.name)
            .field("place", &self.kind.place())
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Opens a connection (logged in, host key checked).
    pub async fn connect(&self) -> Result<Box<dyn Endpoint>, EndpointError> {
        if let Some(why) = &self.unusable {
            return Err(EndpointError::location(why.clone()));
        }
        match &self.kind {
            LocationKind::Local { folder } => {
                Ok(Box::new(crate::local::LocalEndpoint::open(folder)?))
            }
            LocationKind::Sftp { .. } => {
                Ok(Box::new(crate::sftp::SftpEndpoint::connect(self).await?))
            }
            LocationKind::Ftp { .. } => Ok(Box::new(crate::ftp::FtpEndpoint::connect(self).await?)),
            LocationKind::Https { .. } => {
                Ok(Box::new(crate::webdav::DavEndpoint::connect(self).await?))
            }
        }
    }
}

/// When a transfer runs, besides by hand.
pub enum Trigger {
    /// Every so often, from the server's start.
    Interval(Duration),
    /// At the times a cron expression gives (UTC).
    Cron(Schedule),
    /// After events (their handler queue asks for the run; see the configuration).
    Event,
}

/// What to do when the destination name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave the file alone (`transfer.file.skipped`); tried again only once it changes.
    Skip,
    /// Replace what is there.
    Replace,
    /// Deliver under the first free name `NAME.1.EXT`, `NAME.2.EXT`…
    Rename,
    /// Fail the file for good.
    Fail,
}

/// How a copy is checked before its rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Size, and SHA-256 where the destination offers a digest.
    Auto,
    /// Size only.
    Size,
    /// Size and SHA-256; a destination that offers no digest fails the file.
    Sha256,
}

/// What becomes of a source file once delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Stays where it is; the same version is never sent again.
    Keep,
    /// Removed.
    Delete,
    /// Moved into this folder on the source location (keeping its path below the source
    /// folder).
    Move(String),
}

impl Transfer {
    /// When it runs on its own, for people: `every 300 s, cron "0 2 * * *"`, or `by hand`.
    pub fn when(&self) -> String {
        let parts: Vec<String> = self
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::Interval(every) => format!("every {} s", every.as_secs()),
                Trigger::Cron(schedule) => format!("cron {:?}", schedule.text()),
                Trigger::Event => "on events".to_owned(),
            })
            .collect();
        if parts.is_empty() {
            "by hand".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// One `[[transfer]]`.
pub struct Transfer {
    /// Unique name.
    pub name: String,
    /// Where files come from.
    pub source: Arc<Location>,
    /// The folder they are taken from.
    pub source_folder: String,
    /// Which files: a glob or `re:` pattern on the path below the folder (with a leading
    /// `/`), with the permission rules' syntax; every file when `None`.
    pub files: Option<PathPattern>,
    /// Also the folders below it.
    pub recursive: bool,
    /// Where files go.
    pub destination: Arc<Location>,
    /// The folder they are delivered to (paths below the source folder are kept).
    pub destination_folder: String,
    /// When it runs on its own.
    pub triggers: Vec<Trigger>,
    /// A name taken at the destination.
    pub existing: Existing,
    /// How copies are checked.
    pub verify: Verify,
    /// What becomes of delivered sources.
    pub after: After,
    /// Attempts per file (and per run's connection) before giving up.
    pub attempts: u32,
    /// Wait after the first failed attempt, doubled after each.
    pub retry_wait: Duration,
    /// Files copied at once.
    pub parallel: usize,
    /// Bytes per second over all its files at once (`None`: no cap).
    pub rate: Option<u64>,
    /// A file changed more recently than this is left for a later run (it may still be
    /// being written).
    pub min_age: Duration,
    /// Most files one listing takes in.
    pub max_files: usize,
}
