//! Error codes are public interface: every code in the source is documented.

use tessera_integration_tests::workspace;

/// Kebab-case string literals (at least one hyphen) that follow a finding or code constructor.
fn codes_in(source: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for marker in ["Finding::error(", "Finding::warning(", "Finding::info(", "=> \"", "(\""] {
        let mut rest = source;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let literal = if marker.ends_with('"') {
                Some(rest)
            } else {
                rest.trim_start().strip_prefix('"')
            };
            if let Some(lit) = literal {
                if let Some(end) = lit.find('"') {
                    let code = &lit[..end];
                    let kebab = code.contains('-') && code.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                    if kebab {
                        codes.push(code.to_string());
                    }
                }
            }
        }
    }
    codes
}

#[test]
fn every_finding_code_is_documented() {
    let root = workspace();
    let docs = std::fs::read_to_string(root.join("docs/model-support.md")).unwrap();
    let files = [
        "core/src/error.rs",
        "core/src/expect.rs",
        "core/src/inspection.rs",
        "core/src/registry.rs",
        "core/src/classify.rs",
        "core/src/splade.rs",
        "backends/bert/src/assess.rs",
        "backends/jina-bert/src/assess.rs",
        "router/src/plan.rs",
        "validation/src/read/config.rs",
        "validation/src/read/tokenizer.rs",
        "validation/src/read/st_modules.rs",
        "validation/src/read/safetensors.rs",
        "validation/src/checks/vocab.rs",
        "validation/src/checks/dtype.rs",
        "validation/src/checks/dense.rs",
        "validation/src/finite.rs",
    ];
    let mut missing = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        // Test modules build findings of their own stubs.
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for code in codes_in(source) {
            seen.insert(code.clone());
            if !docs.contains(&format!("`{code}`")) {
                missing.push(format!("{code} ({file})"));
            }
        }
    }
    assert!(seen.len() > 40, "the scan found only {seen:?}");
    assert!(missing.is_empty(), "undocumented codes: {missing:?}");
}
