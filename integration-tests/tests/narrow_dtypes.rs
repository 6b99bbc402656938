//! `--dtype int8` and `--dtype bfloat16` through the binary: /info says so, every golden text's
//! vector stays within the documented cosine of sentence-transformers' float32 one (0.998 in int8,
//! 0.9995 in bfloat16), and a text gets the same vector alone and in a batch.

use serde_json::Value;
use tessera_integration_tests::{compare, golden, minilm, run, Server};

#[test]
fn int8_serves_vectors_within_the_bound_and_independent_of_the_batch() {
    serves_within(0.998, "int8");
}

#[test]
fn bfloat16_serves_vectors_within_the_bound_and_independent_of_the_batch() {
    serves_within(0.9995, "bfloat16");
}

fn serves_within(bound: f64, dtype: &str) {
    let Some(golden) = golden("reference/golden_minilm.json") else {
        return;
    };
    let server = Server::start(&minilm(), &["--dtype", dtype, "--max-client-batch-size", "64"]);
    let info: Value = server.get("/info").json().unwrap();
    assert_eq!(info["model_dtype"], dtype);
    let texts = golden["texts"].clone();
    let got = server.embed(&texts);
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["embeddings"].clone()).unwrap();
    let worst = got.iter().zip(&want).map(|(g, w)| compare(g, w).1).fold(1.0, f64::min);
    assert!(worst >= bound, "{dtype}: minimum cosine {worst}");
    for i in [0, 11, 32] {
        let alone = server.embed(&texts[i]);
        let drift = alone[0]
            .iter()
            .zip(&got[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(drift <= 1e-6, "{dtype}: text {i} moves by {drift} with its batch");
    }
}

#[test]
fn the_preflight_names_the_kernel_each_narrow_dtype_runs_on() {
    let model = minilm();
    for (dtype, kernels) in [
        ("int8", &["vnni", "avxvnni", "avx2", "portable"][..]),
        (
            "bfloat16",
            &["avx512-bf16", "converted (no AVX512_BF16: slower than float32)"][..],
        ),
        ("float32", &[][..]),
    ] {
        let out = run(&["validate-model", model.to_str().unwrap(), "--json", "--dtype", dtype]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["dtype"], dtype);
        match report["dtype_kernel"].as_str() {
            Some(kernel) => assert!(kernels.contains(&kernel), "{dtype}: {kernel}"),
            None => assert!(kernels.is_empty(), "{dtype}: no kernel named"),
        }
    }
}
