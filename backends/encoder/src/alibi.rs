//! ALiBi slopes (Press et al., "Train Short, Test Long", 2022): one per head, computed from the
//! head count alone. The bias itself is built per batch inside the attention kernel.

/// Slopes for `heads` heads.
///
/// For a power of two `n`: `2^(-8k/n)`, k = 1..n. Otherwise, with `p` the largest power of two
/// below `n`: the slopes for `p`, then the even-indexed slopes for `2p`, `n - p` of them.
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn power_of_two(n: usize) -> Vec<f64> {
        (1..=n).map(|k| 2f64.powf(-8.0 * k as f64 / n as f64)).collect()
    }
    if heads == 0 {
        return Vec::new();
    }
    let slopes = if heads.is_power_of_two() {
        power_of_two(heads)
    } else {
        let p = 1usize << (usize::BITS - 1 - heads.leading_zeros());
        let mut slopes = power_of_two(p);
        slopes.extend(power_of_two(2 * p).into_iter().step_by(2).take(heads - p));
        slopes
    };
    slopes.into_iter().map(|s| s as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_heads() {
        assert_eq!(alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
    }

    #[test]
    fn twelve_heads_use_the_interleaved_rule() {
        let s = alibi_slopes(12);
        let want: Vec<f32> = (1..=8)
            .map(|k| 2f64.powi(-k))
            .chain([-0.5, -1.5, -2.5, -3.5].into_iter().map(|e| 2f64.powf(e)))
            .map(|v| v as f32)
            .collect();
        assert_eq!(s, want);
    }

    #[test]
    fn every_head_count_gets_distinct_decreasing_base_slopes() {
        for heads in 1..=64 {
            let s = alibi_slopes(heads);
            assert_eq!(s.len(), heads);
            assert!(s.iter().all(|v| *v > 0.0 && *v < 1.0 + f32::EPSILON));
        }
        assert_eq!(alibi_slopes(1), vec![2f32.powi(-8)]);
    }
}
