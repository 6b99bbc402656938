//! `tessera validate-model PATH`: the preflight report, as text or one JSON document.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use tessera_core::{Evidence, Finding, ModelInspection, Severity};

use crate::backends;
use crate::cli::ValidateArgs;
use crate::plan::{plan, PlanOutcome, PlanRequest};
use crate::source::{self, ResolvedModel, Wanted};

/// Version of the `--json` document; bumped on incompatible changes (see docs/validate-model.md).
const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
struct Report<'a> {
    schema_version: u32,
    model: String,
    /// The hub commit validated; absent for local directories.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha: Option<String>,
    servable: bool,
    /// True when config.json or the weights are missing or unreadable, so no backend could be
    /// asked.
    #[serde(skip)]
    undecided: bool,
    architecture: Option<&'a str>,
    backend: Option<&'static str>,
    evidence: &'a [Evidence],
    declined: Vec<Declined<'a>>,
    passed_over: &'a [&'static str],
    pooling: Option<PoolingReport>,
    max_input_length: Option<usize>,
    dtype: Option<&'static str>,
    /// What runs the dtype's products on this CPU, where the dtype packs its linear layers.
    dtype_kernel: Option<&'static str>,
    tokenizer: TokenizerReport,
    weights: Option<WeightsReport>,
    findings: &'a [Finding],
}

#[derive(Debug, Serialize)]
struct Declined<'a> {
    backend: &'static str,
    reasons: &'a [Finding],
}

#[derive(Debug, Serialize)]
struct PoolingReport {
    mode: String,
    source: String,
}

#[derive(Debug, Serialize)]
struct TokenizerReport {
    path: Option<String>,
    vocab_size: Option<usize>,
}

#[derive(Debug, Serialize)]
struct WeightsReport {
    format: tessera_core::inspection::WeightsFormat,
    files: Vec<String>,
    tensors: usize,
}

pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    let model = match resolve(args) {
        Ok(model) => model,
        Err(e) => return usage_error(&format!("{e:#}"), args.json),
    };
    // The preflight plans for the CPU; a CUDA build's server defaults to float16 on a GPU.
    let dtype = crate::device::default_dtype(&candle_core::Device::Cpu, args.dtype, None);
    let inspection = crate::plan::inspect(&model.dir, args.deep, dtype, args.dense_path.as_deref());
    let registry = backends::registry();
    let mut outcome = plan(
        &inspection,
        &registry,
        &PlanRequest {
            pooling: args.pooling.clone(),
            backend: args.backend.clone(),
            dtype,
            max_batch_tokens: None,
        },
    );
    // Files of a hub model live in a cache snapshot or a scratch directory: show them as MODEL@SHA/FILE.
    let label = model
        .sha
        .as_ref()
        .map(|sha| format!("{}@{}", args.model, &sha[..sha.len().min(12)]));
    let shown = |path: &Path| match &label {
        Some(label) => model.shown(label, path),
        None => path.display().to_string(),
    };
    for finding in &mut outcome.findings {
        if let Some(file) = &finding.file {
            finding.file = Some(PathBuf::from(shown(file)));
        }
    }
    let report = report(&args.model, model.sha.as_deref(), &inspection, &outcome, &shown);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot write the report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_text(&report);
    }
    if report.servable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Reports an error that stops the check before any finding (a path that does not exist, a
/// hub that cannot be reached, a bad flag): one JSON document with `--json`, else text. Exit 2.
pub(crate) fn usage_error(message: &str, json: bool) -> ExitCode {
    if json {
        let document = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "servable": false,
            "error": message,
        });
        println!("{document:#}");
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(2)
}

fn report<'a>(
    model: &str,
    sha: Option<&str>,
    inspection: &'a ModelInspection,
    outcome: &'a PlanOutcome,
    shown: &dyn Fn(&Path) -> String,
) -> Report<'a> {
    let plan = outcome.plan.as_ref();
    let chosen = outcome.selection.as_ref().and_then(|s| s.chosen.as_ref());
    Report {
        schema_version: SCHEMA_VERSION,
        model: model.to_string(),
        sha: sha.map(str::to_string),
        servable: plan.is_some(),
        undecided: crate::plan::prerequisites_missing(inspection),
        architecture: chosen.map(|c| c.architecture.as_str()),
        backend: chosen.map(|c| c.factory.name()),
        evidence: chosen.map(|c| c.evidence.as_slice()).unwrap_or(&[]),
        declined: outcome
            .selection
            .as_ref()
            .map(|s| {
                s.declined
                    .iter()
                    .map(|(backend, reasons)| Declined { backend, reasons })
                    .collect()
            })
            .unwrap_or_default(),
        passed_over: outcome
            .selection
            .as_ref()
            .map(|s| s.passed_over.as_slice())
            .unwrap_or(&[]),
        pooling: plan.map(|p| PoolingReport {
            mode: p.task.pooling_name(),
            source: p.task.pooling_source(),
        }),
        max_input_length: plan.map(|p| p.max_input_length),
        dtype: plan.map(|p| p.dtype.name()),
        dtype_kernel: plan.and_then(|p| p.dtype.cpu_kernel()),
        tokenizer: TokenizerReport {
            path: inspection.tokenizer.path.as_deref().map(shown),
            vocab_size: inspection.tokenizer.vocab_size,
        },
        weights: inspection.weights.as_ref().map(|w| WeightsReport {
            format: w.format,
            files: w.files.iter().map(|f| shown(f)).collect(),
            tensors: w.tensors.len(),
        }),
        findings: &outcome.findings,
    }
}

fn print_text(r: &Report<'_>) {
    match &r.sha {
        Some(sha) => println!("model:        {} (commit {sha})", r.model),
        None => println!("model:        {}", r.model),
    }
    match (r.architecture, r.backend) {
        (Some(arch), Some(backend)) if r.servable => println!("architecture: {arch} (backend `{backend}`)"),
        (Some(arch), Some(backend)) => {
            println!("architecture: {arch} (backend `{backend}` serves it once the errors below are fixed)")
        }
        _ if r.undecided => println!("architecture: undecided (config.json or the weights are missing or unreadable)"),
        _ => println!("architecture: no compiled backend can serve it"),
    }
    for e in r.evidence {
        println!(
            "  evidence ({}): `{}`: {}",
            format!("{:?}", e.source).to_lowercase(),
            e.subject,
            e.statement
        );
    }
    // Backends that share an assessment decline for the same reasons: each reason once,
    // with every backend that gave it.
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    if !r.undecided {
        for d in &r.declined {
            for reason in d.reasons.iter().filter(|f| f.severity == Severity::Error) {
                match reasons.iter_mut().find(|(message, _)| *message == reason.message) {
                    Some((_, backends)) if backends.contains(&d.backend) => {}
                    Some((_, backends)) => backends.push(d.backend),
                    None => reasons.push((&reason.message, vec![d.backend])),
                }
            }
        }
    }
    for (message, backends) in reasons {
        let names: Vec<String> = backends.iter().map(|b| format!("`{b}`")).collect();
        println!("  declined by {}: {message}", names.join(", "));
    }
    for name in r.passed_over {
        println!("  also able to serve it: `{name}` (lower priority)");
    }
    if let Some(p) = &r.pooling {
        println!("pooling:      {} (from {})", p.mode, p.source);
    }
    if let Some(n) = r.max_input_length {
        println!("max input:    {n} tokens");
    }
    match (&r.tokenizer.path, r.tokenizer.vocab_size) {
        (Some(path), Some(n)) => println!("tokenizer:    {path} ({n} tokens)"),
        (Some(path), None) => println!("tokenizer:    {path} (unparsable)"),
        _ => println!("tokenizer:    missing"),
    }
    match (r.dtype, r.dtype_kernel) {
        (Some(d), Some(kernel)) => println!("dtype:        {d} (linear layers on this CPU: {kernel})"),
        (Some(d), None) => println!("dtype:        {d}"),
        _ => {}
    }
    if let Some(w) = &r.weights {
        println!(
            "weights:      {:?}, {} tensors in {} file(s)",
            w.format,
            w.tensors,
            w.files.len()
        );
    }
    if r.findings.is_empty() {
        println!("findings:     none");
    } else {
        println!("findings:");
        for f in r.findings {
            println!("  {f}");
        }
    }
    println!(
        "{}",
        if r.servable {
            "result: servable"
        } else {
            "result: NOT servable"
        }
    );
}

/// The model directory to check: a local one, or the preflight of a hub revision.
fn resolve(args: &ValidateArgs) -> anyhow::Result<ResolvedModel> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(source::resolve(
        &args.model,
        args.revision.as_deref(),
        || args.hub.options(),
        if args.deep {
            Wanted::Everything
        } else {
            Wanted::Preflight
        },
        args.dense_path.as_deref(),
    ))
}
