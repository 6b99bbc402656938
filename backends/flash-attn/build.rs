//! Compiles the flash-attention kernels tessera calls, and nothing else.
//!
//! candle-flash-attn builds all 53 of its kernels (every head dimension, split-KV and paged
//! variants tessera never calls): about 2.5 CPU-minutes and 1.6 GB of memory each, some 70 minutes
//! on 2 cores, and its build tool records the objects only once all are done, so a stopped build
//! starts over. Here: the forward kernels for the head dimensions in [`NON_CAUSAL`] and
//! [`CAUSAL`], in float16 and bfloat16, plus `src/varlen.cu`, tessera's own entry point; each
//! object cached under a hash of everything that goes into it, so a second build, or one resumed
//! after a stop, compiles only what changed.
//!
//! Inputs (environment):
//! - `TESSERA_FLASH_ATTN_SOURCES`: candle-flash-attn 0.11.1's `kernels/` directory (default: found
//!   in the cargo registry, where `cargo fetch` puts it);
//! - `CUTLASS_DIR`: a CUTLASS source tree (`include/`, `tools/util/include/`), e.g. the PyPI
//!   package nvidia-cutlass's `cutlass_library/source` (scripts/gpu-check.sh sets it);
//! - `CUDA_HOME` (or nvcc on `PATH`), `CUDA_COMPUTE_CAP` (default 80; flash attention needs 80+);
//! - `TESSERA_FLASH_ATTN_CACHE`: where objects are kept (default `<target>/flash-attn-objects`);
//! - `TESSERA_FLASH_ATTN_JOBS`: nvcc processes at once (default: the CPUs available);
//! - `TESSERA_FLASH_ATTN_CHECK_ONLY=1`: compile `src/varlen.cu` alone and link nothing (for
//!   `cargo check`/`clippy` in CI, where the kernels would take too long).

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Head dimensions of the bidirectional encoders: 32 (MiniLM, bge-small), 64 (every BERT-base and
/// -large, RoBERTa, MPNet, DistilBERT, JinaBERT, NomicBERT, GTE, ModernBERT), 96 and 128 (wider
/// heads). A head dimension between these runs on the next larger kernel; above 128, or not a
/// multiple of 8, tessera uses its candle-op attention.
const NON_CAUSAL: [u32; 4] = [32, 64, 96, 128];
/// Head dimensions of the causal (decoder) families: Qwen3-Embedding's 128.
const CAUSAL: [u32; 1] = [128];
/// The candle-flash-attn release whose sources are compiled (its Cargo.toml pin).
const UPSTREAM: &str = "candle-flash-attn-0.11.1";

fn main() {
    for var in [
        "TESSERA_FLASH_ATTN_SOURCES",
        "CUTLASS_DIR",
        "CUDA_HOME",
        "CUDA_COMPUTE_CAP",
        "TESSERA_FLASH_ATTN_CACHE",
        "TESSERA_FLASH_ATTN_CHECK_ONLY",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/varlen.cu");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    write_kernel_list(&out);
    if env::var_os("CARGO_FEATURE_KERNELS").is_none() {
        return;
    }
    if let Err(message) = build(&out) {
        panic!("\ntessera-flash-attn: {message}\n");
    }
}

/// The (dtype, head dimension, causal) kernels compiled, ascending by head dimension.
fn kernels() -> Vec<(&'static str, u32, bool)> {
    let mut list = Vec::new();
    for dtype in ["fp16", "bf16"] {
        list.extend(NON_CAUSAL.iter().map(|&d| (dtype, d, false)));
        list.extend(CAUSAL.iter().map(|&d| (dtype, d, true)));
    }
    list.sort_by_key(|&(dtype, d, causal)| (dtype, d, causal));
    list
}

/// `kernels.rs` (what the Rust side may dispatch) and `tessera_kernels.h` (what varlen.cu dispatches).
fn write_kernel_list(out: &Path) {
    let list = kernels();
    let rust: String = list
        .iter()
        .map(|(dtype, d, causal)| format!("    ({}, {d}, {causal}),\n", dtype == &"bf16"))
        .collect();
    let rust = format!("/// (bfloat16, head dimension, causal) of every compiled kernel.\npub(crate) const KERNELS: [(bool, usize, bool); {}] = [\n{rust}];\n", list.len());
    let cuda: String = list
        .iter()
        .map(|(dtype, d, causal)| {
            let t = if *dtype == "bf16" {
                "cutlass::bfloat16_t"
            } else {
                "cutlass::half_t"
            };
            format!("TESSERA_KERNEL({t}, {}, {d}, {causal})\n", dtype == &"bf16")
        })
        .collect();
    fs::write(out.join("kernels.rs"), rust).expect("write kernels.rs");
    fs::write(out.join("tessera_kernels.h"), cuda).expect("write tessera_kernels.h");
}

fn build(out: &Path) -> Result<(), String> {
    let started = Instant::now();
    let sources = upstream_sources()?;
    let check_only = env::var("TESSERA_FLASH_ATTN_CHECK_ONLY").is_ok_and(|v| v == "1");
    let cutlass = PathBuf::from(env::var("CUTLASS_DIR").map_err(|_| {
        "CUTLASS_DIR is not set: point it at a CUTLASS source tree (include/, tools/util/include/), \
         e.g. pip's nvidia-cutlass `cutlass_library/source` (scripts/gpu-check.sh does)"
            .to_string()
    })?);
    if !cutlass.join("include/cutlass/cutlass.h").is_file() {
        return Err(format!(
            "CUTLASS_DIR {} has no include/cutlass/cutlass.h",
            cutlass.display()
        ));
    }
    let nvcc = env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("bin/nvcc"))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap: u32 = env::var("CUDA_COMPUTE_CAP")
        .unwrap_or_else(|_| "80".into())
        .parse()
        .map_err(|_| "CUDA_COMPUTE_CAP is not a number (e.g. 80, 90)".to_string())?;
    if cap < 80 {
        return Err(format!(
            "flash attention needs compute capability 8.0 or newer, CUDA_COMPUTE_CAP is {cap}"
        ));
    }
    let mut flags: Vec<String> = [
        "-std=c++17",
        "-O3",
        "-U__CUDA_NO_HALF_OPERATORS__",
        "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_HALF2_OPERATORS__",
        "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "--expt-relaxed-constexpr",
        "--expt-extended-lambda",
        "--use_fast_math",
        "-Xcompiler",
        "-fPIC",
    ]
    .map(String::from)
    .into();
    flags.push(format!("-gencode=arch=compute_{cap},code=sm_{cap}"));
    for include in [
        sources.clone(),
        cutlass.join("include"),
        cutlass.join("tools/util/include"),
    ] {
        flags.push(format!("-I{}", include.display()));
    }

    // What goes into every object besides its own file: the headers, the compiler, the flags.
    // Not OUT_DIR, which differs per profile and per build: the generated header it holds is
    // hashed by content below, so debug, release and check builds share the objects.
    let mut common = DefaultHasher::new();
    flags.hash(&mut common);
    flags.push(format!("-I{}", out.display()));
    nvcc_version(&nvcc)?.hash(&mut common);
    hash_headers(&sources, &mut common)?;
    hash_headers(&cutlass.join("include/cutlass"), &mut common)?;
    fs::read(cutlass.join("include/cutlass/version.h"))
        .unwrap_or_default()
        .hash(&mut common);
    fs::read(out.join("tessera_kernels.h"))
        .unwrap_or_default()
        .hash(&mut common);

    let own = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("src/varlen.cu");
    let mut units = vec![own];
    if !check_only {
        for (dtype, d, causal) in kernels() {
            let suffix = if causal { "_causal" } else { "" };
            units.push(sources.join(format!("flash_fwd_hdim{d}_{dtype}{suffix}_sm80.cu")));
        }
    }
    let cache = cache_dir(out)?;
    let mut objects = Vec::new();
    let mut to_compile = Vec::new();
    for unit in &units {
        let mut hasher = common.clone();
        fs::read(unit)
            .map_err(|e| format!("cannot read {}: {e}", unit.display()))?
            .hash(&mut hasher);
        let stem = unit.file_stem().and_then(|s| s.to_str()).unwrap_or("unit");
        let object = cache.join(format!("{stem}-{:016x}.o", hasher.finish()));
        if !object.is_file() {
            to_compile.push((unit.clone(), object.clone()));
        }
        objects.push(object);
    }
    let compiled = to_compile.len();
    compile_all(&nvcc, &flags, to_compile)?;
    if check_only {
        return Ok(());
    }
    let library = out.join("libtessera_flash_attn.a");
    let _ = fs::remove_file(&library);
    let status = Command::new("ar")
        .arg("crs")
        .arg(&library)
        .args(&objects)
        .status()
        .map_err(|e| format!("cannot run ar: {e}"))?;
    if !status.success() {
        return Err("ar failed to archive the kernels".into());
    }
    println!("cargo::rustc-link-search=native={}", out.display());
    println!("cargo::rustc-link-lib=static=tessera_flash_attn");
    println!("cargo::rustc-link-lib=dylib=cudart");
    println!("cargo::rustc-link-lib=dylib=stdc++");
    if compiled > 0 {
        println!(
            "cargo::warning=flash attention: compiled {compiled} of {} objects in {:.0?} (cache: {})",
            units.len(),
            started.elapsed(),
            cache.display()
        );
    }
    Ok(())
}

fn upstream_sources() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("TESSERA_FLASH_ATTN_SOURCES") {
        let dir = PathBuf::from(dir);
        return if dir.join("flash.h").is_file() {
            Ok(dir)
        } else {
            Err(format!("TESSERA_FLASH_ATTN_SOURCES {} has no flash.h", dir.display()))
        };
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    let found = fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(UPSTREAM).join("kernels"))
        .find(|dir| dir.join("flash.h").is_file());
    found.ok_or_else(|| {
        format!(
            "the kernel sources of {UPSTREAM} are not in {}: run `cargo fetch` (Cargo.lock pins them), \
             or set TESSERA_FLASH_ATTN_SOURCES to its kernels/ directory",
            registry.display()
        )
    })
}

fn cache_dir(out: &Path) -> Result<PathBuf, String> {
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out: the cache sits beside the profiles,
    // so release and debug builds, and a `cargo clean -p`, share it.
    let dir = match env::var_os("TESSERA_FLASH_ATTN_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => out
            .ancestors()
            .nth(4)
            .ok_or("unexpected OUT_DIR layout")?
            .join("flash-attn-objects"),
    };
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn nvcc_version(nvcc: &Path) -> Result<String, String> {
    let out = Command::new(nvcc).arg("--version").output().map_err(|e| {
        format!(
            "cannot run {} ({e}): install the CUDA toolkit or set CUDA_HOME",
            nvcc.display()
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Hashes every header under `dir` (sorted, so the order is stable).
fn hash_headers(dir: &Path, hasher: &mut DefaultHasher) -> Result<(), String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("h" | "hpp" | "cuh" | "inl")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        file.strip_prefix(dir).unwrap_or(&file).hash(hasher);
        fs::read(&file).map_err(|e| e.to_string())?.hash(hasher);
    }
    Ok(())
}

/// Runs nvcc on every (source, object) pair, several at once; each object appears only when
/// complete (written under a temporary name, then renamed), so a stopped build resumes.
fn compile_all(nvcc: &Path, flags: &[String], mut units: Vec<(PathBuf, PathBuf)>) -> Result<(), String> {
    let jobs = env::var("TESSERA_FLASH_ATTN_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut running = Vec::new();
    loop {
        while running.len() < jobs {
            let Some((source, object)) = units.pop() else { break };
            let partial = object.with_extension("o.partial");
            let child = Command::new(nvcc)
                .args(flags)
                .arg("-c")
                .arg(&source)
                .arg("-o")
                .arg(&partial)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
            running.push((child, source, partial, object));
        }
        if running.is_empty() {
            return Ok(());
        }
        let (mut child, source, partial, object) = running.remove(0);
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            for (mut other, ..) in running {
                let _ = other.kill();
            }
            return Err(format!("nvcc failed on {}", source.display()));
        }
        fs::rename(&partial, &object).map_err(|e| format!("cannot keep {}: {e}", object.display()))?;
    }
}
