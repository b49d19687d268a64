//! The `bpf-exporter` binary: flags → settings → listening socket →
//! configs applied to an empty fleet → reader and reload threads → HTTP,
//! and exit codes.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context};
use clap::Parser;

use bpf_exporter::cli::Args;
use bpf_exporter::metrics::{ConfigStatus, SnapshotCell};
use bpf_exporter::reload::trigger::{self, Reloader, Trigger};
use bpf_exporter::settings::Settings;
use bpf_exporter::{exporter, privileges, programs, reload, server};

fn main() -> ExitCode {
    let settings = Settings::from(Args::parse());
    bpf_exporter::logging::init(settings.log_level, settings.log_format, settings.log_timestamps);
    match run(settings) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    if let Some(btf) = &settings.load.btf {
        std::fs::File::open(btf).with_context(|| format!("--btf.path {}: cannot read it", btf.display()))?;
    }
    let listing = settings.selection.read()?;
    // Before the drop below, which gives up CAP_SYS_ADMIN.
    keep_statistics(&settings, &listing)?;
    if settings.check {
        let (fleet, _) = reload::start(&listing, &settings.load, settings.strict);
        let statuses = fleet.statuses();
        print!("{}", exporter::report(&statuses));
        let good = statuses.iter().filter(|s| s.is_good()).count();
        println!("{good} of {} configs good", statuses.len());
        return Ok(if good == statuses.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    // Before any thread starts: threads inherit what their creator holds.
    privileges::drop_unneeded(&settings, &listing)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, listing))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings, listing: bpf_exporter::config::Listing) -> anyhow::Result<()> {
    match server::raise_fd_limit() {
        Ok(limit) => {
            tracing::debug!(limit, "open files limit");
            if limit < settings.server.max_connections as u64 + FD_RESERVE {
                tracing::warn!(
                    limit,
                    max_connections = settings.server.max_connections,
                    "the open files limit leaves little room beyond --web.max-connections; \
                     raise LimitNOFILE= (systemd) or ulimit -n, or lower --web.max-connections"
                );
            }
        }
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    // A broken web configuration at start is fatal: serving without the
    // TLS or authentication it asks for would be worse than not serving.
    let web: server::SharedWeb = Arc::new(arc_swap::ArcSwap::from_pointee(
        match &settings.server.web_config {
            Some(path) => server::web::Web::load(path)
                .map_err(|e| anyhow::anyhow!("--web.config.file: the web configuration is refused:\n{e}"))?,
            None => server::web::Web::default(),
        },
    ));
    // Binding is cheap and the usual failure (a taken port): it comes
    // before any program is loaded, and the server answers (not ready)
    // while they load.
    let listener = server::bind(&settings.server).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        path = %settings.server.telemetry_path,
        web = %web.load().describe(),
        lifecycle = settings.server.enable_lifecycle,
        "serving metrics"
    );
    let cell = Arc::new(SnapshotCell::default());
    let reloader: Arc<OnceLock<Arc<Reloader>>> = Arc::default();
    let hook: server::ReloadHook = {
        let reloader = Arc::clone(&reloader);
        Arc::new(move || {
            let reloader = reloader.get().cloned();
            Box::pin(async move {
                let Some(reloader) = reloader else {
                    return Err("the exporter is still starting; reload once it is ready".to_string());
                };
                match &*reloader.reload_async(Trigger::Request).await {
                    Ok(outcome) if outcome.is_successful() => Ok(outcome.to_string()),
                    Ok(outcome) => Err(outcome.to_string()),
                    Err(e) => Err(e.clone()),
                }
            })
        })
    };
    let (hangup_tx, hangups) = tokio::sync::watch::channel(0u64);
    if let Some(path) = &settings.server.web_config {
        tokio::spawn(server::web::keep_current(
            path.clone(),
            Arc::clone(&web),
            WEB_CONFIG_CHECK,
            hangups.clone(),
        ));
    }
    let server = tokio::spawn(server::serve(
        listener,
        settings.server.clone(),
        Arc::clone(&cell),
        web,
        settings.server.enable_lifecycle.then_some(hook),
        async {
            shutdown_signal().await;
            notify_systemd(&[sd_notify::NotifyState::Stopping]);
        },
    ));

    let fleet = {
        let (listing, load, strict) = (listing.clone(), settings.load.clone(), settings.strict);
        tokio::task::spawn_blocking(move || reload::start(&listing, &load, strict).0)
            .await
            .context("loading the configs")?
    };
    let statuses = fleet.statuses();
    report_start(&statuses);
    if settings.strict && statuses.iter().any(|s| !s.is_good()) {
        bail!("--config.strict: not every config loaded and attached (see above)");
    }
    if listing.is_empty() {
        tracing::warn!("no configs are selected: only the exporter's own metrics are served");
    }

    let threads =
        exporter::spawn(fleet, &listing, &settings, Arc::clone(&cell)).context("starting the map reader")?;
    let _ = reloader.set(Arc::clone(&threads.reloader));
    let _watch = match &settings.selection.dir {
        Some(dir) => Some(
            trigger::watch(dir, Arc::clone(&threads.reloader), settings.check_interval)
                .with_context(|| format!("watching --config.dir {} for changes", dir.display()))?,
        ),
        None => None,
    };
    let running = statuses.iter().filter(|s| s.is_good()).count();
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("{running} of {} configs running", statuses.len())),
    ]);
    tokio::spawn(reload_on_sighup(Arc::clone(&threads.reloader), hangup_tx));
    let _ = server.await;
    tracing::info!("shutting down; detaching programs");
    Ok(())
}

/// Turns BPF run-time statistics on until exit (they go off with the
/// exporter) for `--bpf.stats` and for the CPU budgets, which are measured
/// with them. A flag that cannot have them is fatal, as its every use is;
/// a config's `cpu_budget` costs only that config, refused when loaded.
fn keep_statistics(settings: &Settings, listing: &bpf_exporter::config::Listing) -> anyhow::Result<()> {
    let flag = if settings.bpf_stats {
        "--bpf.stats"
    } else if settings.load.cpu_budget.is_some() {
        "--bpf.cpu-budget"
    } else {
        let asking: Vec<&str> = listing
            .sources
            .iter()
            .filter(|s| bpf_exporter::config::asks_for_cpu_budget(s))
            .map(|s| s.name.as_str())
            .collect();
        if !asking.is_empty() {
            if let Err(e) = programs::stats::keep_enabled() {
                tracing::warn!(
                    configs = %asking.join(","),
                    "cannot turn on the BPF run-time statistics that cpu_budget is measured with \
                     (CAP_SYS_ADMIN): {e}; these configs are refused"
                );
            }
        }
        return Ok(());
    };
    programs::stats::keep_enabled().with_context(|| format!("{flag}: enabling BPF run-time statistics"))
}

/// Says what came up and what did not, with why.
fn report_start(statuses: &[ConfigStatus]) {
    for s in statuses {
        if s.is_good() {
            tracing::info!(config = %s.name, programs = s.programs.len(), "running");
        } else {
            tracing::error!(
                "config {} is {}:\n{}",
                s.name,
                s.state.as_str(),
                exporter::report(std::slice::from_ref(s)).trim_end()
            );
        }
    }
}

/// Descriptors kept for everything but connections: maps, programs,
/// links, perf events, files read by decoders.
const FD_RESERVE: u64 = 256;

/// How often the web configuration's files are looked at for changes.
const WEB_CONFIG_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Tells systemd (`Type=notify`) how the exporter stands; does nothing
/// when not started by systemd.
fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Reloads the configs (and the web configuration) on every SIGHUP, as
/// Prometheus does.
async fn reload_on_sighup(reloader: Arc<Reloader>, web: tokio::sync::watch::Sender<u64>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, reload with POST /-/reload instead: {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        reloader.request(Trigger::Signal);
        web.send_modify(|n| *n += 1);
    }
}

/// Resolves on SIGINT or SIGTERM (systemd and Kubernetes stop with SIGTERM).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
