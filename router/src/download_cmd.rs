//! `tessera download MODEL_ID`: everything `serve` reads, fetched into the hub cache with the
//! same progress, errors and cache layout as `serve`, then the snapshot directory on stdout.
//! The token only ever goes into request headers (never a log line or a message).

use std::process::ExitCode;

use crate::cli::DownloadArgs;
use crate::source::{self, Wanted};

pub(crate) fn run(args: &DownloadArgs) -> ExitCode {
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(source::resolve(
                &args.model,
                args.revision.as_deref(),
                || args.hub.options(),
                Wanted::Everything,
                args.dense_path.as_deref(),
            ))
        });
    match fetched {
        Ok(model) => {
            match &model.sha {
                Some(sha) => tracing::info!(model = %args.model, %sha, "downloaded everything serving reads"),
                None => tracing::info!("`{}` is a local directory: nothing to download", args.model),
            }
            println!("{}", model.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
