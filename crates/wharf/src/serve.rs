//! `wharf serve`: the store, the audit writer and every configured service, until a signal.
//! With `[health]`, the load balancers' probe listener too, and on SIGTERM a drain of
//! `drain_seconds` (not ready, still serving) before stopping.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use wharf_auth::{Authenticator, BanEngine};
use wharf_core::{Event, EventBus, EventKind};

use crate::context::Context;

/// Refuses to serve when the cluster's newest configuration does not apply here: serving
/// with other policies than the rest of the cluster would be a silent difference, so the
/// revision (or this node's file) is mended first.
fn refuse_divergence(ctx: &Context) -> Result<()> {
    match &ctx.cluster_refused {
        Some(why) => anyhow::bail!(
            "the cluster configuration does not apply on this node, which therefore does not start:\n{why}"
        ),
        None => Ok(()),
    }
}

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
    let mut ctx = Context::open(config_path).await?;
    refuse_divergence(&ctx)?;
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
    if takeover.is_some() {
        // A standby may have waited through several revisions: it serves the newest.
        let file = crate::config::Loaded::load(config_path)?;
        (ctx.loaded, ctx.cluster_refused) = crate::context::with_cluster(file, &ctx.store).await;
        refuse_divergence(&ctx)?;
    }
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
    crate::metrics::install(ctx.store.clone());
    let (bus, receiver) = EventBus::with_observer(bans.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut audit = ctx.audit.clone();
    audit.sinks = crate::audit::Sinks::new(
        crate::config::sink::written(&ctx.loaded),
        crate::config::sink::sinks(&ctx.loaded, true)?,
    );
    let written = std::sync::Arc::new(tokio::sync::Notify::new());
    audit.written = Some(written.clone());
    // A file operation is answered once its record is durable, refused when it cannot be.
    bus.set_confirmed(true);
    let mut handlers = crate::reload::Handlers::start(
        &ctx.loaded,
        ctx.store.clone(),
        audit.clone(),
        written,
        &bus,
    )?;
    let mut transfers =
        crate::transfers::Transfers::start(&ctx.loaded, ctx.store.clone(), audit.clone())?;
    let writer = tokio::spawn(audit.run(receiver, bus.writer_progress()));
    let ban_keeper = tokio::spawn(bans.clone().run(bus.clone(), stop_rx.clone()));
    let mut swept = vec![
        ctx.loaded
            .resolve(&ctx.loaded.config.server.data_dir)
            .join("homes"),
    ];
    swept.extend(crate::config::transfer::local_folders(&ctx.loaded));
    let sweeper = tokio::spawn(crate::leftovers::run(
        ctx.store.clone(),
        swept,
        bus.clone(),
        stop_rx.clone(),
    ));
    let backups = crate::backup::schedule::Schedule::from_config(&ctx.loaded, &ctx.store)?
        .map(|schedule| tokio::spawn(schedule.run(bus.clone(), stop_rx.clone())));
    let retention = *ctx.loaded.config.audit.retention_days.get_ref();
    let archiver = (retention > 0).then(|| {
        tokio::spawn(crate::audit_archive::run(
            ctx.store.clone(),
            ctx.loaded.config.server.name.clone(),
            ctx.loaded.resolve(&ctx.loaded.config.audit.archive_dir),
            retention,
            bus.clone(),
            stop_rx.clone(),
        ))
    });
    let auth = Authenticator::new(ctx.store.clone())
        .with_methods(crate::config::auth::methods(&ctx.loaded)?)
        .with_bans(bans);
    let heartbeat =
        tokio::spawn(node.run(auth.connections().clone(), bus.clone(), stop_rx.clone()));

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

    let operations = crate::manager::operations(&ctx.loaded, &ctx.store, &bus);
    // The Manager's configuration page asks the loop below to reload, as SIGHUP does.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<crate::manager::ReloadRequest>(4);
    let in_force = std::sync::Arc::new(crate::reload::InForce::new(
        ctx.loaded.cluster.as_ref().map(|c| c.as_revision()),
    ));
    let follower = tokio::spawn(crate::reload::follow_cluster(
        ctx.store.clone(),
        in_force.clone(),
        reload_tx.clone(),
        stop_rx.clone(),
    ));
    let mut supervisor = crate::supervisor::Supervisor::new(
        &ctx.loaded,
        ctx.store.clone(),
        auth.clone(),
        bus.clone(),
        stop_rx.clone(),
        operations.clone(),
        std::sync::Arc::new(crate::manager::ConfigFile::new(config_path, reload_tx)),
    )?;
    if let Err(e) = supervisor.start_all(&ctx.loaded).await {
        let _ = stop_tx.send(true);
        supervisor.join().await;
        drop(bus);
        let _ = ban_keeper.await;
        let _ = sweeper.await;
        let _ = heartbeat.await;
        if let Some(backups) = backups {
            let _ = backups.await;
        }
        let _ = writer.await;
        return Err(e);
    }
    let mut started = Event::new(EventKind::ServerStarted)
        .message(format!("wharf {}", env!("CARGO_PKG_VERSION")));
    if let Some(cluster) = &ctx.loaded.cluster {
        started = started
            .attr("revision", cluster.revision.to_string())
            .attr("published_by", cluster.admin.clone());
    }
    bus.emit(started);
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
            Some(request) = reload_rx.recv() => {
                // The Manager's apply, or a new cluster configuration revision.
                if in_force.covers(request.for_revision) {
                    let _ = request.answer.send(Ok(format!("cluster configuration revision {} already in force", in_force.number())));
                    continue;
                }
                let outcome = crate::reload::reload(config_path, &ctx.store, &in_force, crate::reload::Running { supervisor: &mut supervisor, handlers: &mut handlers, transfers: &transfers }, &operations, &bus).await;
                if let Ok(line) = &outcome {
                    eprintln!("wharf: configuration reloaded: {line}");
                }
                let _ = request.answer.send(outcome);
            }
            _ = hup.recv() => {
                // Accounts, groups and administrators are read from the store; the file's
                // services, certificate, handlers and password policy are applied here.
                match crate::reload::reload(config_path, &ctx.store, &in_force, crate::reload::Running { supervisor: &mut supervisor, handlers: &mut handlers, transfers: &transfers }, &operations, &bus).await {
                    Ok(line) => eprintln!("wharf: configuration reloaded: {line}"),
                    Err(why) => eprintln!("wharf: configuration not reloaded, the running one stays:\n{why}"),
                }
            }
        }
    }
    health.set_listening(false);
    let _ = stop_tx.send(true);
    let names = supervisor.names();
    supervisor.join().await;
    let _ = ban_keeper.await;
    let _ = sweeper.await;
    let _ = follower.await;
    if let Some(archiver) = archiver {
        let _ = archiver.await;
    }
    transfers.stop().await;
    handlers.stop().await;
    let _ = heartbeat.await;
    for name in names {
        let mut event = Event::new(EventKind::ServiceStopped);
        event.service = Some(name);
        bus.emit(event);
    }
    bus.emit(Event::new(EventKind::ServerStopped).message("signal"));
    // Everything that holds the bus lets it go, so the writer ends as soon as the last
    // record is written rather than after the wait below.
    if let Some(backups) = backups {
        let _ = backups.await;
    }
    drop(operations);
    drop(bus);
    drop(auth);
    // Sessions still running hold bus clones; give them a moment, then flush what we have.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    ctx.store.close().await;
    eprintln!("wharf: stopped");
    Ok(exit)
}
