//! The `bpf-exporter` binary: flags → configs → loaded programs → reader
//! thread → HTTP server, and exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;

use bpf_exporter::cli::Args;
use bpf_exporter::metrics::SnapshotCell;
use bpf_exporter::reader::cache::LabelCache;
use bpf_exporter::reload::trigger::{self, Reloader};
use bpf_exporter::{config, exporter, programs, reader, server};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = config::sources(args.config_dir.as_deref(), args.config_names.as_deref())?;
    let (mut reader, outcomes) = exporter::assemble(&sources, &args.metrics_prefix, args.read_method);

    if args.config_check {
        print!("{}", exporter::report(&outcomes));
        let good = outcomes.iter().filter(|o| o.is_good()).count();
        println!("{good} of {} configs good", outcomes.len());
        return Ok(if good == outcomes.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    for o in outcomes.iter().filter(|o| !o.is_good()) {
        tracing::error!(
            "config {} is {}:\n{}",
            o.status.name,
            o.status.state.as_str(),
            exporter::report(std::slice::from_ref(o)).trim_end()
        );
    }
    if args.config_strict && outcomes.iter().any(|o| !o.is_good()) {
        bail!("--config.strict: not every config loaded and attached (see above)");
    }
    for o in outcomes.iter().filter(|o| o.is_good()) {
        tracing::info!(config = %o.status.name, programs = o.status.programs.len(), "running");
    }

    reader.set_label_cache(LabelCache::new(args.label_cache_size, args.label_refresh));
    // Held until exit: statistics stay on only while the exporter runs.
    let _stats = if args.bpf_stats {
        let fd = programs::stats::enable().context("--bpf.stats: enabling BPF run-time statistics")?;
        reader.export_run_stats();
        Some(fd)
    } else {
        None
    };
    let cell = Arc::new(SnapshotCell::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let options = server::ServerOptions {
            listen: args.listen_address.clone(),
            telemetry_path: args.telemetry_path.clone(),
        };
        let listener = server::bind(&options).await?;
        tracing::info!(address = %listener.local_addr()?, path = %options.telemetry_path, "serving metrics");
        let running = Arc::new(
            reader::spawn(reader, cell.clone(), args.read_interval).context("starting the map reader")?,
        );
        let reloader = Arc::new(Reloader::new(
            Arc::clone(&running),
            args.config_dir.clone(),
            args.config_names.clone(),
            args.metrics_prefix.clone(),
            args.read_method,
            &sources,
        ));
        let _watch = match &args.config_dir {
            Some(dir) => Some(
                trigger::watch(dir, Arc::clone(&reloader), args.config_check_interval)
                    .with_context(|| format!("watching --config.dir {} for changes", dir.display()))?,
            ),
            None => None,
        };
        tokio::spawn(reload_on_sighup(Arc::clone(&reloader)));
        let hook: server::ReloadHook = {
            let reloader = Arc::clone(&reloader);
            Arc::new(move || match reloader.reload() {
                Ok(outcome) if outcome.is_successful() => Ok(outcome.to_string()),
                Ok(outcome) => Err(outcome.to_string()),
                Err(e) => Err(e),
            })
        };
        server::serve(listener, options, cell, Some(hook), shutdown_signal()).await;
        tracing::info!("shutting down; detaching programs");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the configs on every SIGHUP, as Prometheus does.
async fn reload_on_sighup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, reload with POST /-/reload instead: {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let reloader = Arc::clone(&reloader);
        let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
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
