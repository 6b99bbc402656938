//! `tessera`: a text-embedding inference server with TEI's HTTP API.

mod alloc;
mod backends;
mod cli;
mod cpus;
mod device;
mod download_cmd;
mod grpc;
mod http;
mod infer;
mod metrics;
mod plan;
mod queue;
mod serve;
mod settings;
mod source;
mod telemetry;
mod validate_cmd;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::settings::Settings;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let version = format!(
        "{} (backends: {})",
        env!("CARGO_PKG_VERSION"),
        backends::registry().names().join(", ")
    );
    let parsed = Cli::command()
        .version(version)
        .try_get_matches_from(cli::serve_by_default(std::env::args_os().collect()))
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Download(args) => {
            // Progress on stderr; stdout is the snapshot directory alone, for scripts.
            let _logs = telemetry::init(false, false, "info", None);
            download_cmd::run(&args)
        }
        Command::ValidateModel(args) => {
            // stdout carries the report; only problems (a hub that cannot be reached...) go to stderr.
            let _logs = telemetry::init(false, false, "warn", None);
            validate_cmd::run(&args)
        }
        Command::Serve(args) => {
            let config_file = Settings::config_file(args.config.as_ref());
            let settings::Loaded {
                settings,
                warnings,
                tei_variables,
            } = match Settings::load(config_file.as_deref(), &args) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("error: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = settings.check() {
                eprintln!("error: invalid configuration: {e}");
                return ExitCode::from(2);
            }
            let cpus = cpus::detect();
            // candle sizes its matmul thread pool from RAYON_NUM_THREADS or the host's cores, not
            // the cgroup quota; set it before any thread pool exists (no other thread runs yet).
            if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                std::env::set_var("RAYON_NUM_THREADS", cpus.threads.to_string());
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cpus.threads)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            // The trace exporter's gRPC channel lives on the runtime.
            let traces = {
                let _runtime = runtime.enter();
                let otlp = settings.otlp_endpoint.as_deref().map(|endpoint| telemetry::Otlp {
                    endpoint,
                    service_name: &settings.otlp_service_name,
                });
                telemetry::init(settings.json_output, settings.disable_spans, "info", otlp)
            };
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            if !tei_variables.is_empty() {
                tracing::info!(variables = ?tei_variables, "settings read from TEI's environment variables");
            }
            if let Some(path) = &settings.uds_path {
                tracing::info!(
                    path,
                    "--uds-path is accepted for TEI's command lines and unused: tessera runs no backend over a socket"
                );
            }
            tracing::info!(
                affinity = ?cpus.affinity,
                cgroup_quota = ?cpus.quota,
                compute_threads = cpus.threads,
                "CPU budget"
            );
            let code = match runtime.block_on(serve::run(settings, cpus.threads)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Logged once: the log goes to stderr, where a plain copy would repeat it.
                    tracing::error!("{e:#}");
                    ExitCode::from(1)
                }
            };
            {
                let _runtime = runtime.enter();
                traces.shutdown();
            }
            code
        }
    }
}

/// A command line clap refuses. `validate-model --json` promises one JSON document whatever
/// happens, so its usage errors are one too; everything else is clap's own message.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args().collect();
    let wants_json = args.iter().any(|a| a == "validate-model") && args.iter().any(|a| a == "--json");
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if wants_json && !informational {
        let message = e.render().to_string();
        let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
        return validate_cmd::usage_error(first, true);
    }
    e.exit()
}
