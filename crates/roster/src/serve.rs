//! `roster serve`, `roster ingress`, `roster projector` and `roster licensing`: the long-running processes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result};
use roster_admin::{AdminState, LicensingSettings};
use roster_eventlog::{DbLog, DbLogConfig, DbSource, EventLog, InlineApply, Instrumented};
use roster_eventlog_kafka::{KafkaLog, KafkaSource};
use roster_ingress::{IngressState, OutcomeWaiter};
use roster_licensing::{LicensingWorker, WorkerConfig};
use roster_projector::{OutcomeHub, Projector, ProjectorConfig};
use roster_store::accounts::{self, UsageRecorder};
use tokio_util::sync::CancellationToken;

use crate::config::Common;

/// Which components this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ingress, projector and licensing worker in one process (`roster serve`).
    All,
    /// The SCIM ingress only.
    Ingress,
    /// The projector only.
    Projector,
    /// The licensing worker only (`roster licensing`).
    Licensing,
}

/// Runs the process until SIGTERM or SIGINT.
pub async fn run(c: Common, role: Role) -> Result<()> {
    let db = roster_db::connect_with_pool(&c.database_url, c.database_max_connections)
        .await
        .with_context(|| format!("connecting to {}", roster_db::redact(&c.database_url)))?;
    if role == Role::All {
        roster_db::migrate(&db).await.context("applying migrations")?;
    } else {
        wait_for_migrations(&db).await?;
    }
    let kafka = c.kafka();
    let hub = (role == Role::All).then(|| Arc::new(OutcomeHub::default()));
    let projector = matches!(role, Role::All | Role::Projector).then(|| {
        let config = ProjectorConfig { consumer: c.consumer_name(), ..ProjectorConfig::default() };
        Projector::new(db.clone(), hub.clone(), config)
    });
    // With the embedded log and the projector in this process, each group commit is applied in
    // the transaction that appends it: one writer, and a write answers as soon as it commits.
    let inline: Option<Arc<dyn InlineApply>> = match (&kafka, &projector, role) {
        (None, Some(p), Role::All) => Some(Arc::new(p.clone())),
        _ => None,
    };
    // On SQLite the writer keeps a connection of its own, so its page cache survives between
    // group commits (`roster_db::connect_writer`).
    let writer_db = if kafka.is_none() && c.database_url.starts_with("sqlite:") {
        roster_db::connect_writer(&c.database_url).await.context("opening the event log writer's connection")?
    } else {
        db.clone()
    };
    let db_log = DbLog::start_with(writer_db, DbLogConfig::default(), inline);
    let kafka_log = match &kafka {
        Some(k) => {
            roster_eventlog_kafka::ensure_topic(k).await.context("preparing the Kafka event topic")?;
            Some(KafkaLog::new(k.clone())?)
        }
        None => None,
    };
    let log: Arc<dyn EventLog> = match &kafka_log {
        Some(k) => Arc::new(Instrumented(k.clone())),
        None => Arc::new(Instrumented(db_log.clone())),
    };
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();

    if let Some(projector) = projector {
        let token = cancel.clone();
        match &kafka {
            Some(k) => {
                let mut source = KafkaSource::new(k)?;
                tasks.push(tokio::spawn(async move {
                    projector.run(&mut source, token).await;
                    tracing::debug!("projector stopped; leaving the consumer group");
                    // Leaving the group is a courtesy that speeds up the next rebalance; when a
                    // concurrent rebalance holds it (every replica stopping at once), the session
                    // timeout does the same, so it is not worth the grace period.
                    let close = tokio::task::spawn_blocking(move || source.close());
                    if tokio::time::timeout(Duration::from_secs(2), close).await.is_err() {
                        tracing::info!(
                            "leaving the Kafka consumer group timed out; the session timeout ends membership"
                        );
                    }
                }));
            }
            None => {
                let start = projector.position(0).await?.unwrap_or(1);
                let mut source = DbSource::live(db_log.clone(), start, Duration::from_millis(100));
                tasks.push(tokio::spawn(async move {
                    projector.run(&mut source, token).await;
                }));
            }
        }
    }

    let public = TcpListener::bind(&c.listen).with_context(|| format!("binding --listen {}", c.listen))?;
    let ops = TcpListener::bind(&c.ops_listen).with_context(|| format!("binding --ops-listen {}", c.ops_listen))?;
    let public_addr = public.local_addr()?;
    let ops_addr = ops.local_addr()?;
    // TLS is set up before anything listens, so a bad certificate stops the start with a clear error.
    let tls = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) if matches!(role, Role::All | Role::Ingress) => {
            let (files, first) = roster_ingress::tls::CertFiles::load(cert, key)
                .with_context(|| format!("loading --tls-cert {} / --tls-key {}", cert.display(), key.display()))?;
            let current = Arc::new(roster_ingress::tls::ReloadingCert::new(first));
            let config = roster_ingress::tls::server_config(current.clone()).context("configuring TLS")?;
            Some((files, current, config))
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = c.public_url.clone().unwrap_or_else(|| format!("{scheme}://{public_addr}"));
    let public_url = public_url.trim_end_matches('/').to_string();

    let admin_token = match std::env::var("ROSTER_ADMIN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = accounts::generate_secret()?;
            println!("roster: admin token (ROSTER_ADMIN_TOKEN was unset; shown once): {t}");
            t
        }
    };

    let usage = Arc::new(UsageRecorder::default());
    // One waiter per process: without an in-process projector it runs one outcome poller (and one
    // LISTEN connection) that the SCIM ingress and the admin API share.
    // The ingress's lookups by key (tokens, outcomes) run where Postgres caches their plans.
    let keyed = match role {
        Role::All | Role::Ingress => roster_db::connect_keyed(&c.database_url)
            .await
            .with_context(|| format!("connecting to {}", roster_db::redact(&c.database_url)))?,
        _ => None,
    };
    let waiter = OutcomeWaiter::new(keyed.clone().unwrap_or_else(|| db.clone()), hub.clone());
    let mut servers = Vec::new();
    if matches!(role, Role::All | Role::Ingress) {
        let ingress_config = c.ingress_config(public_url.clone())?;
        let state = IngressState {
            db: roster_db::ReadDb::new(db.clone()).with_keyed(keyed.clone()),
            log: log.clone(),
            waiter: waiter.clone(),
            usage: usage.clone(),
            limiter: Arc::new(roster_ingress::limits::Limiter::new(roster_ingress::limits::LimitConfig {
                account_rate: c.rate_limit_per_account,
                account_burst: c.rate_limit_burst,
                max_concurrent: c.max_concurrent_requests,
            })),
            config: Arc::new(ingress_config),
        };
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(roster_ingress::request_timeout))
                .wrap(actix_web::middleware::from_fn(roster_ingress::concurrency_limit))
                .wrap(actix_web::middleware::from_fn(roster_ingress::http_metrics))
                .wrap(actix_web::middleware::from_fn(roster_ingress::trace_requests))
                .app_data(web::Data::new(state.clone()))
                .configure(roster_ingress::configure)
        });
        let server = match tls {
            Some((files, current, config)) => {
                let token = cancel.clone();
                let interval = Duration::from_secs(c.tls_reload_secs);
                tasks.push(tokio::spawn(async move {
                    roster_ingress::tls::watch(files, current, interval, token.cancelled_owned()).await;
                }));
                server.listen_rustls_0_23(public, config)?
            }
            None => server.listen(public)?,
        };
        let server = server.disable_signals().shutdown_timeout(c.shutdown_grace_secs.max(1)).run();
        servers.push(server.handle());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "public server failed");
            }
        }));
        println!("roster: public listening on {public_addr}");

        let flusher_db = db.clone();
        let flusher_usage = usage.clone();
        let token = cancel.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if let Err(e) = flusher_usage.flush(&flusher_db).await {
                    tracing::warn!(error = %e, "recording token usage failed");
                }
            }
        }));
    } else {
        drop(public);
    }

    if matches!(role, Role::All | Role::Licensing) {
        let worker = LicensingWorker::new(
            db.clone(),
            log.clone(),
            WorkerConfig {
                hold: c.hold_threshold(),
                account_labels: c.metrics_account_labels,
                full_every: std::time::Duration::from_secs(c.license_full_reconcile_secs.max(1)),
                ..WorkerConfig::default()
            },
        );
        tasks.push(tokio::spawn(worker.run(cancel.clone())));
    }

    let licensing = LicensingSettings {
        waiter: waiter.clone(),
        apply_timeout: Duration::from_secs(c.apply_timeout_secs.max(1)),
        hold: c.hold_threshold(),
    };
    let lag_check = (matches!(role, Role::All | Role::Ingress) && c.ready_max_projector_lag > 0)
        .then(|| roster_admin::LagCheck { consumer: c.consumer_name(), max_events: c.ready_max_projector_lag });
    let admin =
        AdminState::new(db.clone(), log.clone(), &admin_token, public_url.clone(), licensing).with_lag_check(lag_check);
    let ops_server =
        HttpServer::new(move || App::new().app_data(web::Data::new(admin.clone())).configure(roster_admin::configure))
            .listen(ops)?
            .workers(1)
            .disable_signals()
            .shutdown_timeout(c.shutdown_grace_secs.max(1))
            .run();
    servers.push(ops_server.handle());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = ops_server.await {
            tracing::error!(error = %e, "ops server failed");
        }
    }));
    println!("roster: ops listening on {ops_addr}");

    if role == Role::All && accounts::is_empty(&db).await? {
        let account = accounts::create_account(&db, "default").await?;
        let (_, token) = accounts::create_token(&db, &account.id, "default", &accounts::Expiry::Never).await?;
        println!("roster: created account \"default\"; its SCIM token is shown only now.");
        println!("roster: SCIM base URL: {public_url}/scim/v2/accounts/{}", account.id);
        println!("roster: SCIM token: {token}");
    }
    println!("roster: ready");

    shutdown_signal().await;
    let grace = Duration::from_secs(c.shutdown_grace_secs.max(1));
    tracing::info!(grace_secs = grace.as_secs(), "shutting down");
    // Stop accepting and finish in-flight requests, then stop the background loops (the projector
    // finishes or rolls back its batch), flush the producer and the token usage: all within the
    // grace period, after which the process exits regardless.
    let deadline = tokio::time::Instant::now() + grace;
    // Writes waiting for a projector that is stopping too answer 503 a second before the grace
    // runs out, leaving that second for the producer flush and the token usage.
    waiter.stop_waiting_by(deadline - Duration::from_secs(1).min(grace / 2));
    let graceful = async {
        futures_util::future::join_all(servers.iter().map(|s| s.stop(true))).await;
        tracing::debug!("servers stopped; stopping background tasks");
        cancel.cancel();
        futures_util::future::join_all(tasks).await;
        tracing::debug!("background tasks stopped");
        if let Some(k) = kafka_log.clone() {
            // Blocking, so off the async workers, and only for what is left of the grace.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = tokio::task::spawn_blocking(move || k.flush(left)).await;
        }
        if let Err(e) = usage.flush(&db).await {
            tracing::warn!(error = %e, "recording token usage on shutdown failed");
        }
    };
    if tokio::time::timeout(grace, graceful).await.is_err() {
        tracing::warn!("shutdown grace period exceeded; exiting anyway");
    }
    // A task still holding a connection after the grace (a batch cut short) would keep the pool's
    // close waiting forever; its transaction rolls back when the process exits.
    let _ = tokio::time::timeout(Duration::from_secs(1), db.close()).await;
    Ok(())
}

/// Split processes never migrate (replicas starting together would race on the schema): they
/// wait for `roster migrate` (the Kubernetes migration Job) to have applied every migration.
async fn wait_for_migrations(db: &roster_db::Db) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut logged = false;
    loop {
        if roster_db::migrations_applied(db).await.unwrap_or(false) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the database schema is not up to date; run `roster migrate` first");
        }
        if !logged {
            tracing::warn!("waiting for `roster migrate` to apply pending migrations");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
