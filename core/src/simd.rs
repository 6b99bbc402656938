//! Reductions shaped so the compiler vectorizes them: a single float accumulator is a chain of
//! dependent adds it may not reorder; independent lanes are not. Meant to be inlined into loops
//! run under `pulp::Arch::dispatch`, which compiles them for the CPU's widest vectors.

/// Independent accumulators per reduction (one AVX-512 register of f32).
pub const LANES: usize = 16;

/// The sum of `f(v)` over `values`, in [`LANES`] accumulators.
#[inline(always)]
pub fn lane_sum_by(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().map(|v| f(*v)).sum::<f32>()
}

/// The largest element (`-inf` for an empty slice), in [`LANES`] accumulators.
#[inline(always)]
pub fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(*v);
        }
    }
    tail.iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_cover_every_element() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(&values), max, "{n}");
            let want: f32 = values.iter().map(|v| v * 2.0).sum();
            assert!((lane_sum_by(&values, |v| v * 2.0) - want).abs() < 1e-5, "{n}");
        }
    }
}
