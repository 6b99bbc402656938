//! Flash attention on packed sequences (varlen), float16 and bfloat16, with the kernels
//! `build.rs` compiles: the head dimensions tessera's families use, bidirectional and causal,
//! optionally with ALiBi. Built only with the `kernels` feature (nvcc, CUTLASS headers).

#[cfg(feature = "kernels")]
mod cuda;

#[cfg(feature = "kernels")]
pub use cuda::varlen;

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Whether a compiled kernel covers `head_dim` (rounded up to the next compiled one; it must be
/// a multiple of 8, the kernels' vector width) with this precision and mask.
pub fn supports(bf16: bool, head_dim: usize, causal: bool) -> bool {
    head_dim.is_multiple_of(8)
        && compiled::KERNELS
            .iter()
            .any(|&(b, d, c)| b == bf16 && c == causal && head_dim <= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_head_dimensions_have_kernels() {
        for head_dim in [32, 64, 96, 128] {
            for bf16 in [false, true] {
                assert!(supports(bf16, head_dim, false), "{head_dim}");
            }
        }
        // Between compiled sizes: the next larger kernel, masked.
        assert!(supports(false, 48, false) && supports(true, 80, false));
        // Qwen3-Embedding's causal 128.
        assert!(supports(false, 128, true) && supports(true, 128, true));
        assert!(
            supports(false, 64, true),
            "a causal 64 runs on the causal 128 kernel, masked"
        );
        assert!(!supports(false, 256, false) && !supports(false, 60, false));
    }
}
