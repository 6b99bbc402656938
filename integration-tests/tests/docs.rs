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

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_finding_code_is_documented() {
    let root = workspace();
    let docs = std::fs::read_to_string(root.join("docs/model-support.md")).unwrap();
    // Every source file of the crates that produce findings, so a new family file is covered
    // without being listed.
    let mut files: Vec<std::path::PathBuf> = ["core/src", "backends", "validation/src"]
        .iter()
        .flat_map(|dir| rust_files(&root.join(dir)))
        .filter(|f| {
            // Build scripts and tests produce no findings.
            f.file_name().is_some_and(|n| n != "build.rs")
                && !f
                    .components()
                    .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
        })
        .collect();
    files.push(root.join("router/src/plan.rs"));
    let mut missing = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        // Test modules build findings of their own stubs.
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for code in codes_in(source) {
            seen.insert(code.clone());
            if !docs.contains(&format!("`{code}`")) {
                missing.push(format!("{code} ({})", file.display()));
            }
        }
    }
    assert!(seen.len() > 40, "the scan found only {seen:?}");
    assert!(missing.is_empty(), "undocumented codes: {missing:?}");
}
