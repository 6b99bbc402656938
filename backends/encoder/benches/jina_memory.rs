//! Peak memory of JinaBERT at its maximum length: `cargo bench -p tessera-encoder --bench jina_memory`.
//!
//! Prints the process peak RSS (VmHWM) after loading jina-tiny and after embedding one input of
//! 8192 tokens, and the time that took. Not a test: numbers go in the issue notes.

use std::time::Instant;

use candle_core::{DType, Device};
use tessera_core::{BackendFactory, Batch, LoadRequest, Pooling};
use tessera_encoder::JINA_BERT;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/jina-tiny");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} not found", dir.display());
        return;
    }
    println!("peak RSS at start: {:.1} MiB", peak_rss_mib());
    let inspection = tessera_validation::inspect(&dir);
    let request = LoadRequest {
        inspection: &inspection,
        dtype: DType::F32,
        device: Device::Cpu,
        kernel: None,
    };
    let backend = JINA_BERT.load(&request).expect("load jina-tiny");
    println!("peak RSS after loading jina-tiny: {:.1} MiB", peak_rss_mib());

    for len in [512usize, 2048, 8192] {
        let ids: Vec<u32> = (0..len).map(|i| 1000 + (i as u32 * 7919) % 20000).collect();
        let types = vec![0u32; len];
        let batch = Batch::from_sequences([(&ids[..], &types[..])]);
        let started = Instant::now();
        let hidden = backend.forward(&batch).expect("forward");
        let pooled = Pooling::Mean.pool(&hidden, &batch.seqs).expect("pool");
        assert_eq!(pooled.dims(), &[1, 32]);
        println!(
            "one {len}-token input: {:.1} ms, peak RSS {:.1} MiB",
            started.elapsed().as_secs_f64() * 1e3,
            peak_rss_mib()
        );
    }
}
