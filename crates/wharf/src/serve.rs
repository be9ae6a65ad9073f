//! `wharf serve`: the store, the audit writer and every configured service, until a signal.
//! With `[health]`, the load balancers' probe listener too, and on SIGTERM a drain of
//! `drain_seconds` (not ready, still serving) before stopping.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use wharf_auth::{Authenticator, BanEngine};
use wharf_core::{Event, EventBus, EventKind};
use wharf_ftp::{FtpConfig, FtpService, TlsMode};
use wharf_http::{HttpConfig, HttpService};
use wharf_ssh::{PrivateKey, SshConfig, SshService};

use crate::config::{FtpTls, ServiceKind, secs};
use crate::context::Context;

/// Runs the server; as a standby (`--standby`), only once it takes over.
pub async fn serve(config_path: &Path, standby: bool, active: Option<&str>) -> Result<ExitCode> {
    if !config_path.exists() {
        let dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (path, password) = crate::init::init(dir, &Default::default()).await?;
        crate::init::announce(&path, password.as_deref());
    }
    let ctx = Context::open(config_path).await?;
    let takeover = if standby {
        match crate::standby::wait(&ctx, active).await? {
            Some(takeover) => Some(takeover),
            None => {
                eprintln!("wharf: stopped while standing by");
                return Ok(ExitCode::SUCCESS);
            }
        }
    } else {
        None
    };
    let own_name = takeover
        .as_ref()
        .is_some_and(|t| t.active == ctx.loaded.config.server.name);
    let forced = own_name
        && takeover
            .as_ref()
            .is_some_and(|t| t.cause == crate::standby::Cause::Command);
    if let Some(takeover) = takeover.as_ref().filter(|_| !own_name) {
        crate::standby::fence(&ctx.store, takeover).await?;
    }
    let node = crate::cluster::Node::register(&ctx.loaded, &ctx.store, forced).await?;
    if let Some(takeover) = &takeover
        && takeover.holder_was_live()
        && let Some(old) = &takeover.holder
    {
        // The holder is alive: it finds itself fenced at its next heartbeat and stops.
        // Listening only after that heartbeat keeps the two from serving together.
        let beat = u64::try_from(old.heartbeat_ms).unwrap_or(0).min(60_000);
        tokio::time::sleep(std::time::Duration::from_millis(beat)).await;
    }
    let name_lost = node.lost();
    let bans = BanEngine::new(
        ctx.loaded.config.ban.policy(),
        ctx.store.clone(),
        ctx.loaded.config.server.name.clone(),
    );
    bans.reload().await;
    let (bus, receiver) = EventBus::with_observer(bans.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut audit = ctx.audit.clone();
    audit.sinks = std::sync::Arc::new(crate::config::sink::sinks(&ctx.loaded, true)?);
    let written = std::sync::Arc::new(tokio::sync::Notify::new());
    audit.written = Some(written.clone());
    let handlers = wharf_handlers::Engine::new(
        ctx.store.clone(),
        ctx.loaded.config.server.name.clone(),
        crate::config::handler::handlers(&ctx.loaded)?,
        audit.clone(),
        written,
    )
    .with_settings(ctx.loaded.config.handler_queue.settings());
    bus.set_durable(!ctx.loaded.config.handlers.is_empty());
    // A file operation is answered once its record is durable, refused when it cannot be.
    bus.set_confirmed(true);
    // Uploads a uuid-prefix handler would rename are named uniquely as they commit, so a
    // second upload of the same name can never replace one before its handler runs.
    if let Some(naming) = handlers.upload_naming() {
        bus.set_upload_naming(naming);
    }
    let writer = tokio::spawn(audit.run(receiver, bus.writer_progress()));
    let handler_engine = tokio::spawn(handlers.run(stop_rx.clone()));
    let ban_keeper = tokio::spawn(bans.clone().run(bus.clone(), stop_rx.clone()));
    let sweeper = tokio::spawn(crate::leftovers::run(
        ctx.store.clone(),
        ctx.loaded
            .resolve(&ctx.loaded.config.server.data_dir)
            .join("homes"),
        bus.clone(),
        stop_rx.clone(),
    ));
    let backups = crate::backup::schedule::Schedule::from_config(&ctx.loaded, &ctx.store)?
        .map(|schedule| tokio::spawn(schedule.run(bus.clone(), stop_rx.clone())));
    let mut services = tokio::task::JoinSet::new();
    let auth = Authenticator::new(ctx.store.clone())
        .with_methods(crate::config::auth::methods(&ctx.loaded)?)
        .with_bans(bans);
    let heartbeat =
        tokio::spawn(node.run(auth.connections().clone(), bus.clone(), stop_rx.clone()));
    let tls = match &ctx.loaded.config.tls {
        Some(section) => Some(
            wharf_net::tls::server_config(
                &ctx.loaded.resolve(&section.certificate),
                &ctx.loaded.resolve(&section.key),
            )
            .context("[tls]")?,
        ),
        None => None,
    };

    let health =
        crate::health::Health::new(ctx.loaded.config.server.name.clone(), ctx.store.clone());
    if let Some(section) = &ctx.loaded.config.health {
        let address = section.address().map_err(anyhow::Error::msg)?;
        match health.listen(address, stop_rx.clone()).await {
            Ok((bound, _task)) => {
                eprintln!(
                    "wharf: health (load balancer probes: /live, /ready) listening on {bound}"
                );
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                drop(bus);
                let _ = ban_keeper.await;
                let _ = sweeper.await;
                let _ = writer.await;
                anyhow::bail!("[health]: cannot listen on {address}: {e}");
            }
        }
    }

    // The dashboard's list of services: filled as each one binds.
    let mut service_list = Vec::new();
    let (services_tx, services_rx) = watch::channel(Vec::new());
    for service in &ctx.loaded.config.services {
        let name = service.name.get_ref().clone();
        let addresses = service.socket_addresses().map_err(anyhow::Error::msg)?;
        let max_file_size = service.max_file_size.as_ref().map(|s| *s.get_ref());
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
                    services.spawn(b.run(auth.clone(), bus.clone(), stop_rx.clone()));
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
                let dav =
                    wharf_core::dav_state::DavState::new(std::sync::Arc::new(ctx.store.clone()));
                HttpService::bind(config).await.map(|b| {
                    let b = b
                        .with_dav_state(dav)
                        .with_web_sessions(std::sync::Arc::new(ctx.store.clone()));
                    let addrs = b.local_addrs();
                    services.spawn(b.run(auth.clone(), bus.clone(), stop_rx.clone()));
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
                    services.spawn(b.run(
                        auth.clone(),
                        crate::manager::operations(&ctx.loaded, &ctx.store, &bus),
                        bus.clone(),
                        std::sync::Arc::new(ctx.store.clone()),
                        services_rx.clone(),
                        ctx.loaded.config.server.name.clone(),
                        stop_rx.clone(),
                    ));
                    (addrs, "manager: web console, admin API")
                })
            }
            ServiceKind::Ssh { login, ssh } => {
                let mut host_keys = Vec::new();
                for file in ssh.host_keys.get_ref() {
                    let path = ctx.loaded.resolve(file);
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
                    services.spawn(b.run(auth.clone(), bus.clone(), stop_rx.clone()));
                    (addrs, "ssh: SFTP, SCP")
                })
            }
        };
        let (addrs, what) = match bound {
            Ok(b) => b,
            Err(e) => {
                let mut event =
                    Event::new(EventKind::ServiceFailed).failed(format!("cannot listen: {e}"));
                event.service = Some(name.clone());
                bus.emit(event);
                let _ = stop_tx.send(true);
                drop(bus);
                let _ = ban_keeper.await;
                let _ = sweeper.await;
                let _ = heartbeat.await;
                if let Some(backups) = backups {
                    let _ = backups.await;
                }
                let _ = writer.await;
                anyhow::bail!(
                    "service {name}: cannot listen on port {}: {e}",
                    service.port()
                );
            }
        };
        let bound_addrs = addrs.clone();
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let mut event = Event::new(EventKind::ServiceStarted)
            .message(format!("listening on {}", addrs.join(", ")));
        event.service = Some(name.clone());
        bus.emit(event);
        eprintln!("wharf: {name} ({what}) listening on {}", addrs.join(", "));
        service_list.push(wharf_manager::ServiceInfo {
            name: name.clone(),
            kind: service.type_name().to_owned(),
            addresses: bound_addrs,
            state: "running".to_owned(),
        });
    }
    let _ = services_tx.send(service_list);
    bus.emit(
        Event::new(EventKind::ServerStarted)
            .message(format!("wharf {}", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(takeover) = &takeover {
        bus.emit(crate::standby::took_over(takeover));
        eprintln!(
            "wharf: took over as node {:?}",
            ctx.loaded.config.server.name
        );
    }
    health.set_listening(true);

    let drain = ctx
        .loaded
        .config
        .health
        .as_ref()
        .map_or(0, |h| *h.drain_seconds.get_ref());
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut exit = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => {
                if drain > 0 {
                    // Balancers see "not ready" and send new clients elsewhere; everything
                    // here keeps serving until the drain ends (or a second signal).
                    health.start_draining();
                    eprintln!("wharf: draining: not ready for {drain} s, then stopping (SIGTERM again stops now)");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(drain)) => {}
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                break;
            }
            _ = name_lost.notified() => {
                exit = ExitCode::FAILURE;
                break;
            }
            _ = hup.recv() => {
                // Accounts and groups are read from the store at each login, so they need no
                // reload; listener changes still need a restart.
                match crate::config::Loaded::load(config_path) {
                    Ok(_) => tracing::info!("configuration checked on SIGHUP; listener changes take effect at restart"),
                    Err(issues) => tracing::warn!("configuration has errors, keeping the running one:\n{issues}"),
                }
            }
        }
    }
    health.set_listening(false);
    let _ = stop_tx.send(true);
    while services.join_next().await.is_some() {}
    let _ = ban_keeper.await;
    let _ = sweeper.await;
    let _ = handler_engine.await;
    let _ = heartbeat.await;
    for service in &ctx.loaded.config.services {
        let mut event = Event::new(EventKind::ServiceStopped);
        event.service = Some(service.name.get_ref().clone());
        bus.emit(event);
    }
    bus.emit(Event::new(EventKind::ServerStopped).message("signal"));
    drop(bus);
    drop(auth);
    // Sessions still running hold bus clones; give them a moment, then flush what we have.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    ctx.store.close().await;
    eprintln!("wharf: stopped");
    Ok(exit)
}
