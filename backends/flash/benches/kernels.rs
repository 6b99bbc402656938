//! `cargo bench -p tessera-flash --bench kernels [matmul]` (`matmul`: the linear layers alone)
//!
//! 1. GFLOP/s of the linear layers (weights pre-transposed, int8, bf16, and candle_nn::Linear) at [16, 128, 2048 tokens x 384] x
//!    [384 x 1536], the shapes of all-MiniLM-L6-v2's feed-forward.
//! 2. GELU (erf and tanh forms) on one short input's intermediate activations.
//! 3. The tiled varlen kernel against candle-nn's varlen kernel and the padded reference: a batch
//!    of mixed lengths (16-512 tokens,
//!    12 heads of 32) and one 8192-token input (4 heads of 8, as jina-tiny), each in its own
//!    process so the reported peak RSS belongs to that case alone. Then the mask kinds on one
//!    8192-token input of ModernBERT-base's shape (12 heads of 64): global, causal, and the local
//!    layers' 128-token window, whose key tiles outside the window are skipped. Last, one causal
//!    2048-token input of Gemma 2 9B's attention shape (16 heads of 256), without and with its
//!    soft cap (`attn_logit_softcapping: 50`): what capping every score costs.

use std::time::{Duration, Instant};

// The server's allocator, so the figures include what it saves (see router/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Module, Tensor};
use tessera_core::layers::Linear;
use tessera_core::{AttentionKernel, Mask, PaddedAttention, PositionBias, Scoring, SeqOffsets};
use tessera_flash::kernels::{TiledCpu, VarlenCpu};

fn random(shape: &[usize], seed: u64) -> Tensor {
    tessera_core::testing::random_tensor(shape, seed)
}

/// Median wall time of `f` over enough runs to take about a second (at least 3).
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let probe = Instant::now();
    f();
    let once = probe.elapsed().max(Duration::from_micros(1));
    let runs = ((1.0 / once.as_secs_f64()) as usize).clamp(3, 200);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:")).map(str::to_string))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn matmul() {
    println!(
        "linear layer [tokens x 384] x [384 x 1536] + bias (threads: {})",
        candle_core::utils::get_num_threads()
    );
    let (weight, bias) = (random(&[1536, 384], 1), random(&[1536], 2));
    let strided = candle_nn::Linear::new(weight.clone(), Some(bias.clone()));
    let transposed = Linear::new(weight, Some(bias)).unwrap();
    let mut int8 = transposed.clone();
    int8.quantize(tessera_core::quant::Format::Int8).unwrap();
    let mut bf16 = transposed.clone();
    bf16.quantize(tessera_core::quant::Format::Bf16).unwrap();
    for tokens in [16usize, 128, 2048] {
        let x = random(&[tokens, 384], 3);
        let ours = median(|| {
            let _ = transposed.forward(&x).unwrap();
        });
        let quantized = median(|| {
            let _ = int8.forward(&x).unwrap();
        });
        let halved = median(|| {
            let _ = bf16.forward(&x).unwrap();
        });
        let candle = median(|| {
            let _ = strided.forward(&x).unwrap();
        });
        let gflops = |t: Duration| 2.0 * tokens as f64 * 384.0 * 1536.0 / t.as_secs_f64() / 1e9;
        println!(
            "  {tokens:>5} tokens: {:>8.3} ms  {:>6.1} GFLOP/s   int8: {:>8.3} ms  {:>6.1} GOP/s   bf16: {:>8.3} ms  {:>6.1} GFLOP/s   (candle_nn::Linear, strided weight: {:.3} ms, {:.1} GFLOP/s)",
            ours.as_secs_f64() * 1e3,
            gflops(ours),
            quantized.as_secs_f64() * 1e3,
            gflops(quantized),
            halved.as_secs_f64() * 1e3,
            gflops(halved),
            candle.as_secs_f64() * 1e3,
            gflops(candle)
        );
    }
}

fn activations() {
    println!("activations on [14 x 1536] (one MiniLM layer's intermediate, one short input)");
    let x = random(&[14, 1536], 7);
    let ours = median(|| {
        let _ = tessera_core::gelu::gelu_erf(&x).unwrap();
    });
    let erf = median(|| {
        let _ = x.gelu_erf().unwrap();
    });
    let tanh = median(|| {
        let _ = x.gelu().unwrap();
    });
    println!(
        "  gelu (erf, tessera): {:>7.1} us   candle gelu (erf): {:>7.1} us   candle gelu (tanh): {:>7.1} us",
        ours.as_secs_f64() * 1e6,
        erf.as_secs_f64() * 1e6,
        tanh.as_secs_f64() * 1e6
    );
}

fn run_case(name: &str) {
    let (lengths, heads, dim, alibi): (Vec<usize>, usize, usize, bool) = match name {
        n if n.starts_with("mixed") => ((0..32).map(|i| 16 + (i * 97) % 497).collect(), 12, 32, false),
        // ModernBERT-base's attention shape: 12 heads of 64, rotary positions (no bias).
        n if n.starts_with("modern") => (vec![8192], 12, 64, false),
        // bge-multilingual-gemma2's attention shape: 16 heads of 256.
        n if n.starts_with("gemma") => (vec![2048], 16, 256, false),
        _ => (vec![8192], 4, 8, true),
    };
    let mask = if name.contains("window") {
        Mask::Window { radius: 64 }
    } else if name.contains("causal") {
        Mask::Causal
    } else {
        Mask::Bidirectional
    };
    let scoring = Scoring {
        mask,
        softcap: name.contains("capped").then_some(50.0),
    };
    let seqs = SeqOffsets::from_lengths(lengths);
    let total = seqs.total_tokens();
    let (q, k, v) = (
        random(&[total, heads, dim], 4),
        random(&[total, heads, dim], 5),
        random(&[total, heads, dim], 6),
    );
    let bias = if alibi {
        PositionBias::Alibi {
            slopes: (1..=heads).map(|h| 2f32.powf(-8.0 * h as f32 / heads as f32)).collect(),
        }
    } else {
        PositionBias::None
    };
    let kernel: Box<dyn AttentionKernel> = if name.ends_with("padded") {
        Box::new(PaddedAttention::default())
    } else if name.ends_with("candle") {
        Box::new(VarlenCpu)
    } else {
        Box::new(TiledCpu)
    };
    let before = peak_rss_mib();
    let t = median(|| {
        let _ = kernel.attend(&q, &k, &v, &seqs, &bias, scoring).unwrap();
    });
    println!(
        "  {name:<22} {total:>5} tokens in {:>2} seqs: {:>9.2} ms  peak RSS {:>6.1} MiB (inputs {before:.1} MiB)",
        seqs.len(),
        t.as_secs_f64() * 1e3,
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let Some(case) = args.first().and_then(|a| a.strip_prefix("case:")) {
        run_case(case);
        return;
    }
    matmul();
    if args.first().is_some_and(|a| a == "matmul") {
        return;
    }
    activations();
    println!("attention: tessera's tiled kernel, candle-nn's varlen kernel, padded (each case in a fresh process)");
    let me = std::env::current_exe().expect("own path");
    for case in [
        "mixed-tiled",
        "mixed-candle",
        "mixed-padded",
        "long8192-tiled",
        "long8192-candle",
        "long8192-padded",
        "modern8192-global-tiled",
        "modern8192-causal-tiled",
        "modern8192-window-tiled",
        "modern8192-window-candle",
        "gemma2048-causal-tiled",
        "gemma2048-causal-capped-tiled",
    ] {
        let status = std::process::Command::new(&me)
            .arg(format!("case:{case}"))
            .status()
            .expect("run case");
        assert!(status.success(), "{case} failed");
    }
}
