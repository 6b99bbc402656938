//! Download progress: a bar on a terminal, a log line every few seconds otherwise (container logs),
//! and the stall watchdog: a download that receives nothing for `--hub-timeout` fails instead of hanging.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
// tokio's clock, so tests can pause time.
use tokio::time::Instant;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Bytes of a model's downloads, known and received so far, for whoever reports them (the
/// server's `/health` while downloading).
#[derive(Debug, Default)]
pub(crate) struct Bytes {
    pub(crate) total: AtomicU64,
    pub(crate) done: AtomicU64,
}

/// One batch of downloads, shared by the tasks that run them.
#[derive(Clone)]
pub(crate) struct Transfer {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    files: usize,
    files_done: AtomicUsize,
    bytes: Arc<Bytes>,
    last_activity: Mutex<(Instant, String)>,
    bar: Option<indicatif::ProgressBar>,
}

impl Transfer {
    /// `bytes`: where the counts go (shared with a reporter), fresh ones if `None`.
    pub(crate) fn new(label: String, files: usize, bytes: Option<Arc<Bytes>>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.clone());
            bar
        });
        Self {
            inner: Arc::new(Inner {
                label,
                files,
                files_done: AtomicUsize::new(0),
                bytes: bytes.unwrap_or_default(),
                last_activity: Mutex::new((Instant::now(), String::new())),
                bar,
            }),
        }
    }

    /// Marks that `file` is being worked on now (its request is about to go out).
    pub(crate) fn touch(&self, file: &str) {
        if let Ok(mut last) = self.inner.last_activity.lock() {
            *last = (Instant::now(), file.to_string());
        }
    }

    fn alive(&self) {
        if let Ok(mut last) = self.inner.last_activity.lock() {
            last.0 = Instant::now();
        }
    }

    pub(crate) fn file_done(&self, file: &str, bytes: u64, took: Duration) {
        self.inner.files_done.fetch_add(1, Ordering::Relaxed);
        self.alive();
        let line = format!("downloaded {file} ({}) in {took:.1?}", mib(bytes));
        match &self.inner.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
    }

    /// Resolves only when nothing has moved for `timeout`, to the error saying so; logs progress on
    /// the way. Race it against the downloads.
    pub(crate) async fn watch(&self, timeout: Duration) -> anyhow::Error {
        let mut next_log = Instant::now() + LOG_EVERY;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (since, file) = match self.inner.last_activity.lock() {
                Ok(last) => (last.0.elapsed(), last.1.clone()),
                Err(_) => (Duration::ZERO, String::new()),
            };
            if since >= timeout {
                return anyhow!(
                    "downloading {} stalled: nothing received for {}s (last file: {file}); \
                     check the network or raise --hub-timeout",
                    self.inner.label,
                    timeout.as_secs()
                );
            }
            if self.inner.bar.is_none() && Instant::now() >= next_log {
                next_log = Instant::now() + LOG_EVERY;
                let (done, total) = (
                    self.inner.bytes.done.load(Ordering::Relaxed),
                    self.inner.bytes.total.load(Ordering::Relaxed),
                );
                let percent = (done * 100).checked_div(total).unwrap_or(0);
                tracing::info!(
                    "downloading {}: {} of {} ({percent}%), {} of {} files done",
                    self.inner.label,
                    mib(done),
                    mib(total),
                    self.inner.files_done.load(Ordering::Relaxed),
                    self.inner.files
                );
            }
        }
    }
}

impl hf_hub::api::tokio::Progress for Transfer {
    async fn init(&mut self, size: usize, _filename: &str) {
        self.inner.bytes.total.fetch_add(size as u64, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.inc_length(size as u64);
        }
        self.alive();
    }

    async fn update(&mut self, size: usize) {
        self.inner.bytes.done.fetch_add(size as u64, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.inc(size as u64);
        }
        self.alive();
    }

    async fn finish(&mut self) {
        self.alive();
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stall_becomes_an_error_naming_the_file() {
        let transfer = Transfer::new("org/name".into(), 1, None);
        transfer.touch("model.safetensors");
        let err = transfer.watch(Duration::from_secs(3)).await.to_string();
        assert!(err.contains("model.safetensors") && err.contains("3s"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn progress_keeps_the_watchdog_quiet() {
        let transfer = Transfer::new("org/name".into(), 1, None);
        let mut feeder = transfer.clone();
        let watch = transfer.watch(Duration::from_secs(3));
        let feed = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                hf_hub::api::tokio::Progress::update(&mut feeder, 10).await;
            }
        };
        tokio::select! {
            err = watch => panic!("stalled while data flowed: {err}"),
            () = feed => {}
        }
        assert_eq!(transfer.inner.bytes.done.load(Ordering::Relaxed), 200);
    }
}
