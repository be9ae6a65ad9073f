//! The services this node runs: started at `serve`, and on a reload (`wharf reload`,
//! SIGHUP) started, retired or replaced to match the new configuration without a restart.
//!
//! A service is kept while its section says the same (compared as written canonically: a
//! moved or commented section is the same service). A removed service is retired: its
//! listeners close at once and its open sessions go on to their end. A changed one is
//! retired and started again from its new section on the same name (binding waits a
//! moment for the retired listeners to let go of the port). The certificate every TLS
//! service presents is read again at each reload; handshakes after it present the new one.
//!
//! This module never decides what a session may do: it only starts and retires listeners.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use wharf_admin::Operations;
use wharf_auth::Authenticator;
use wharf_core::{Event, EventBus, EventKind};
use wharf_ftp::{FtpConfig, FtpService, TlsMode};
use wharf_http::{HttpConfig, HttpService};
use wharf_manager::ServiceInfo;
use wharf_net::Stop;
use wharf_net::tls::Certificates;
use wharf_ssh::{PrivateKey, SshConfig, SshService};
use wharf_store::Store;

use crate::config::{FtpTls, Loaded, Service, ServiceKind, secs};

/// How long a replaced service's new listeners wait for the old ones to let go of the port.
const REBIND_WAIT: Duration = Duration::from_secs(3);

/// One running service.
struct Running {
    written: String,
    retire: watch::Sender<bool>,
    info: ServiceInfo,
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Services started (new names).
    pub started: Vec<String>,
    /// Services retired (gone from the configuration).
    pub retired: Vec<String>,
    /// Services retired and started again from a changed section.
    pub replaced: Vec<String>,
    /// Services that could not start, with why.
    pub failed: Vec<(String, String)>,
}

impl Applied {
    /// One line for the record and the log.
    pub fn describe(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        format!(
            "services started: {}; retired: {}; replaced: {}; failed: {}",
            list(&self.started),
            list(&self.retired),
            list(&self.replaced),
            list(&failed)
        )
    }
}

/// The node's services.
pub struct Supervisor {
    store: Store,
    auth: Authenticator,
    bus: EventBus,
    stop: watch::Receiver<bool>,
    node: String,
    operations: Operations,
    configuration: Arc<dyn wharf_manager::Configuration>,
    certificates: Option<Arc<Certificates>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    dashboard: watch::Sender<Vec<ServiceInfo>>,
    running: BTreeMap<String, Running>,
    tasks: tokio::task::JoinSet<()>,
}

fn certificate_paths(loaded: &Loaded) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    loaded.config.tls.as_ref().map(|section| {
        (
            loaded.resolve(&section.certificate),
            loaded.resolve(&section.key),
        )
    })
}

impl Supervisor {
    /// A supervisor with nothing running yet; reads the certificate `loaded` names.
    pub fn new(
        loaded: &Loaded,
        store: Store,
        auth: Authenticator,
        bus: EventBus,
        stop: watch::Receiver<bool>,
        operations: Operations,
        configuration: Arc<dyn wharf_manager::Configuration>,
    ) -> Result<Supervisor> {
        let certificates = match certificate_paths(loaded) {
            Some((certificate, key)) => {
                Some(Certificates::load(&certificate, &key).context("[tls]")?)
            }
            None => None,
        };
        let tls = match &certificates {
            Some(c) => Some(c.server_config().context("[tls]")?),
            None => None,
        };
        Ok(Supervisor {
            store,
            auth,
            bus,
            stop,
            node: loaded.config.server.name.clone(),
            operations,
            configuration,
            certificates,
            tls,
            dashboard: watch::channel(Vec::new()).0,
            running: BTreeMap::new(),
            tasks: tokio::task::JoinSet::new(),
        })
    }

    fn publish(&self) {
        let list = self.running.values().map(|r| r.info.clone()).collect();
        self.dashboard.send_replace(list);
    }

    /// Starts every service at `serve`; the first that cannot start stops it all.
    pub async fn start_all(&mut self, loaded: &Loaded) -> Result<()> {
        for service in &loaded.config.services {
            self.start(loaded, service).await.with_context(|| {
                format!(
                    "service {}: cannot listen on port {}",
                    service.name.get_ref(),
                    service.port()
                )
            })?;
        }
        self.publish();
        Ok(())
    }

    /// The authenticator every service shares (a reload replaces its chain).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Makes the running services match `loaded`, and reads the certificate again.
    pub async fn apply(&mut self, loaded: &Loaded) -> Result<Applied, String> {
        match (&self.certificates, certificate_paths(loaded)) {
            (Some(certificates), Some((certificate, key))) => certificates
                .reload(&certificate, &key)
                .map_err(|e| format!("[tls]: {e}"))?,
            (None, Some((certificate, key))) => {
                let certificates =
                    Certificates::load(&certificate, &key).map_err(|e| format!("[tls]: {e}"))?;
                self.tls = Some(
                    certificates
                        .server_config()
                        .map_err(|e| format!("[tls]: {e}"))?,
                );
                self.certificates = Some(certificates);
            }
            (_, None) => {}
        }
        let mut applied = Applied::default();
        let wanted: BTreeMap<&str, &Service> = loaded
            .config
            .services
            .iter()
            .map(|s| (s.name.get_ref().as_str(), s))
            .collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.retire(&name);
            applied.retired.push(name);
        }
        for (name, service) in wanted {
            let replaced = match self.running.get(name) {
                Some(running) if running.written == service.written => continue,
                Some(_) => {
                    self.retire(name);
                    true
                }
                None => false,
            };
            match self.start(loaded, service).await {
                Ok(()) if replaced => applied.replaced.push(name.to_owned()),
                Ok(()) => applied.started.push(name.to_owned()),
                Err(e) => applied.failed.push((name.to_owned(), format!("{e:#}"))),
            }
        }
        self.publish();
        Ok(applied)
    }

    /// Retires a running service: its listeners close, its sessions go on to their end.
    fn retire(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            let _ = running.retire.send(true);
            let mut event = Event::new(EventKind::ServiceStopped)
                .message("retired by a new configuration; open sessions go on to their end");
            event.service = Some(name.to_owned());
            self.bus.emit(event);
            eprintln!("wharf: {name} retired");
        }
    }

    /// Starts one service, waiting briefly for a port a retired service is letting go.
    async fn start(&mut self, loaded: &Loaded, service: &Service) -> Result<()> {
        let deadline = tokio::time::Instant::now() + REBIND_WAIT;
        loop {
            match self.bind_and_run(loaded, service).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if tokio::time::Instant::now() < deadline
                        && e.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    let mut event = Event::new(EventKind::ServiceFailed)
                        .failed(format!("cannot listen: {e:#}"));
                    event.service = Some(service.name.get_ref().clone());
                    self.bus.emit(event);
                    return Err(e);
                }
            }
        }
    }

    async fn bind_and_run(&mut self, loaded: &Loaded, service: &Service) -> Result<()> {
        let name = service.name.get_ref().clone();
        let addresses = service.socket_addresses().map_err(anyhow::Error::msg)?;
        let max_file_size = service.max_file_size.as_ref().map(|s| *s.get_ref());
        let (retire, retired) = watch::channel(false);
        let stop = Stop {
            server: self.stop.clone(),
            retire: Some(retired),
        };
        let auth = self.auth.clone();
        let bus = self.bus.clone();
        let tls = self.tls.clone();
        let store = self.store.clone();
        let manager_node = wharf_manager::Node {
            ops: self.operations.clone(),
            events: self.bus.clone(),
            sessions: Arc::new(self.store.clone()),
            services: self.dashboard.subscribe(),
            name: self.node.clone(),
            configuration: Arc::clone(&self.configuration),
        };
        let tasks = &mut self.tasks;
        let bound = match &service.kind {
            ServiceKind::Ftp { login, ftp, .. } | ServiceKind::FtpsImplicit { login, ftp } => {
                let mode = match &service.kind {
                    ServiceKind::Ftp { tls, .. } => match tls.get_ref() {
                        FtpTls::Required => TlsMode::Required,
                        FtpTls::Optional => TlsMode::Optional,
                        FtpTls::Off => TlsMode::Off,
                    },
                    _ => TlsMode::Implicit,
                };
                let config = FtpConfig {
                    name: name.clone(),
                    addresses,
                    passive_ports: ftp.passive_ports.as_ref().and_then(|p| {
                        match p.get_ref().as_slice() {
                            [first, last] => Some(*first..=*last),
                            _ => None,
                        }
                    }),
                    idle_timeout: secs(&login.idle_timeout),
                    login_grace_time: secs(&login.login_grace_time),
                    data_timeout: secs(&ftp.data_timeout),
                    max_connections: *service.max_connections.get_ref(),
                    max_per_ip: *service.max_per_ip.get_ref(),
                    max_auth_tries: login.max_auth_tries(3),
                    active_mode: ftp.active_mode,
                    allow_foreign_data: ftp.allow_foreign_data,
                    passive_address: ftp
                        .passive_address
                        .as_ref()
                        .and_then(|a| a.get_ref().parse().ok()),
                    tls: mode,
                    tls_config: tls.clone(),
                    require_tls_session_reuse: ftp.require_tls_session_reuse,
                    max_file_size,
                    proxy: service.proxy(),
                };
                let what = match mode {
                    TlsMode::Off => "ftp: FTP",
                    TlsMode::Optional => "ftp: FTP, explicit FTPS",
                    TlsMode::Required => "ftp: explicit FTPS",
                    TlsMode::Implicit => "ftps-implicit: implicit FTPS",
                };
                FtpService::bind(config).await.map(|b| {
                    let addrs = b.local_addrs();
                    tasks.spawn(b.run(auth.clone(), bus.clone(), stop.clone()));
                    (addrs, what)
                })
            }
            ServiceKind::Http { http, .. } | ServiceKind::Https { http } => {
                let (redirect_to_https, tls, what) = match &service.kind {
                    ServiceKind::Http {
                        redirect_to_https, ..
                    } => (
                        redirect_to_https.as_ref().map(|p| *p.get_ref()),
                        None,
                        "http: web client, REST API, WebDAV",
                    ),
                    _ => (None, tls.clone(), "https: web client, REST API, WebDAV"),
                };
                let config = HttpConfig {
                    name: name.clone(),
                    addresses,
                    tls,
                    max_connections: *service.max_connections.get_ref(),
                    max_per_ip: *service.max_per_ip.get_ref(),
                    header_timeout: secs(&http.header_timeout),
                    body_timeout: secs(&http.body_timeout),
                    max_upload_size: *http.max_upload_size.get_ref(),
                    max_file_size,
                    session_timeout: secs(&http.session_timeout),
                    session_lifetime: secs(&http.session_lifetime),
                    recheck_after: secs(&http.recheck_after),
                    redirect_to_https,
                    proxy: service.proxy(),
                };
                let dav = wharf_core::dav_state::DavState::new(std::sync::Arc::new(store.clone()));
                HttpService::bind(config).await.map(|b| {
                    let b = b
                        .with_dav_state(dav)
                        .with_web_sessions(std::sync::Arc::new(store.clone()));
                    let addrs = b.local_addrs();
                    tasks.spawn(b.run(auth.clone(), bus.clone(), stop.clone()));
                    (addrs, what)
                })
            }
            ServiceKind::Manager { manager } => {
                let Some(tls) = tls.clone() else {
                    anyhow::bail!("service {name}: the Manager needs a [tls] section");
                };
                let config = crate::manager::config(service, manager, addresses, tls);
                wharf_manager::ManagerService::bind(config).await.map(|b| {
                    let addrs = b.local_addrs();
                    tasks.spawn(b.run(auth.clone(), manager_node, stop.clone()));
                    (addrs, "manager: web console, admin API")
                })
            }
            ServiceKind::Ssh { login, ssh } => {
                let mut host_keys = Vec::new();
                for file in ssh.host_keys.get_ref() {
                    let path = loaded.resolve(file);
                    let key = PrivateKey::read_openssh_file(&path)
                        .with_context(|| format!("cannot read host key {}", path.display()))?;
                    host_keys.push(key);
                }
                let config = SshConfig {
                    name: name.clone(),
                    addresses,
                    banner: ssh.banner.clone(),
                    idle_timeout: secs(&login.idle_timeout),
                    login_grace_time: secs(&login.login_grace_time),
                    max_connections: *service.max_connections.get_ref(),
                    max_per_ip: *service.max_per_ip.get_ref(),
                    max_auth_tries: login.max_auth_tries(6),
                    algorithms: ssh.algorithms(),
                    host_keys,
                    max_file_size,
                    proxy: service.proxy(),
                };
                SshService::bind(config).await.map(|b| {
                    let addrs = b.local_addrs();
                    tasks.spawn(b.run(auth.clone(), bus.clone(), stop.clone()));
                    (addrs, "ssh: SFTP, SCP")
                })
            }
        };
        let (addrs, what) = bound?;
        let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let mut event = Event::new(EventKind::ServiceStarted)
            .message(format!("listening on {}", shown.join(", ")));
        event.service = Some(name.clone());
        self.bus.emit(event);
        eprintln!("wharf: {name} ({what}) listening on {}", shown.join(", "));
        self.running.insert(
            name.clone(),
            Running {
                written: service.written.clone(),
                retire,
                info: ServiceInfo {
                    name,
                    kind: service.type_name().to_owned(),
                    addresses: addrs,
                    state: "running".to_owned(),
                },
            },
        );
        Ok(())
    }

    /// The names of the services running, for the stop records.
    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Waits for every service (and every retired one's sessions) once the server stops.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
