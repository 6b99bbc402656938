//! `tessera validate-model PATH`: the preflight report, as text or one JSON document.

use std::process::ExitCode;

use serde::Serialize;
use tessera_core::{Evidence, Finding, ModelInspection, Severity};

use crate::backends;
use crate::cli::ValidateArgs;
use crate::plan::{plan, PlanOutcome, PlanRequest};

/// Version of the `--json` document; bumped on incompatible changes (see docs/validate-model.md).
const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
struct Report<'a> {
    schema_version: u32,
    model: String,
    servable: bool,
    architecture: Option<&'a str>,
    backend: Option<&'static str>,
    evidence: &'a [Evidence],
    declined: Vec<Declined<'a>>,
    passed_over: &'a [&'static str],
    pooling: Option<PoolingReport>,
    max_input_length: Option<usize>,
    dtype: Option<&'static str>,
    tokenizer: TokenizerReport<'a>,
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
struct TokenizerReport<'a> {
    path: Option<&'a std::path::Path>,
    vocab_size: Option<usize>,
}

#[derive(Debug, Serialize)]
struct WeightsReport {
    format: tessera_core::inspection::WeightsFormat,
    files: Vec<String>,
    tensors: usize,
}

pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    if !args.path.is_dir() {
        eprintln!("error: {} is not a model directory", args.path.display());
        return ExitCode::from(2);
    }
    let inspection = tessera_validation::inspect(&args.path);
    let registry = backends::registry();
    let outcome = plan(
        &inspection,
        &registry,
        &PlanRequest {
            pooling: args.pooling.clone(),
            backend: args.backend.clone(),
            dtype: args.dtype,
            max_batch_tokens: None,
        },
    );
    let report = report(&inspection, &outcome);
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

fn report<'a>(inspection: &'a ModelInspection, outcome: &'a PlanOutcome) -> Report<'a> {
    let plan = outcome.plan.as_ref();
    let chosen = outcome.selection.as_ref().and_then(|s| s.chosen.as_ref());
    Report {
        schema_version: SCHEMA_VERSION,
        model: inspection.root.display().to_string(),
        servable: plan.is_some(),
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
        tokenizer: TokenizerReport {
            path: inspection.tokenizer.path.as_deref(),
            vocab_size: inspection.tokenizer.vocab_size,
        },
        weights: inspection.weights.as_ref().map(|w| WeightsReport {
            format: w.format,
            files: w.files.iter().map(|f| f.display().to_string()).collect(),
            tensors: w.tensors.len(),
        }),
        findings: &outcome.findings,
    }
}

fn print_text(r: &Report<'_>) {
    println!("model:        {}", r.model);
    match (r.architecture, r.backend) {
        (Some(arch), Some(backend)) => println!("architecture: {arch} (backend `{backend}`)"),
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
    for d in &r.declined {
        for reason in d.reasons.iter().filter(|f| f.severity == Severity::Error) {
            println!("  declined by `{}`: {}", d.backend, reason.message);
        }
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
    match (r.tokenizer.path, r.tokenizer.vocab_size) {
        (Some(path), Some(n)) => println!("tokenizer:    {} ({n} tokens)", path.display()),
        (Some(path), None) => println!("tokenizer:    {} (unparsable)", path.display()),
        _ => println!("tokenizer:    missing"),
    }
    if let Some(d) = r.dtype {
        println!("dtype:        {d}");
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
