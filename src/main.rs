//! The `bpf-exporter` binary: flags → configs → loaded programs → reader
//! thread → HTTP server, and exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;

use bpf_exporter::cli::Args;
use bpf_exporter::metrics::SnapshotCell;
use bpf_exporter::reader::cache::LabelCache;
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
        let _reader =
            reader::spawn(reader, cell.clone(), args.read_interval).context("starting the map reader")?;
        server::serve(listener, options, cell, shutdown_signal()).await;
        tracing::info!("shutting down; detaching programs");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
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
