//! Bfloat16 linear layers for the CPU: weights rounded to bf16 once at load, each input row
//! rounded to bf16 as it arrives, products of pairs summed in f32 (`vdpbf16ps`: 32 products per
//! 512-bit instruction, twice float32's FMA). Where the CPU lacks AVX512_BF16 a portable loop
//! gives the same numbers slowly; the server does not pack bf16 there (see [`bf16_native`]).

use std::sync::OnceLock;

use rayon::prelude::*;

use super::{Packed, ROWS, TILE};

/// Inputs one f32 lane of `vdpbf16ps` sums.
const PAIR: usize = 2;

/// Whether this CPU multiplies bf16 pairs natively (AVX512_BF16).
pub fn bf16_native() -> bool {
    Kernel::detect() != Kernel::Portable
}

/// A `[out, in]` weight matrix in bf16, packed for the kernels.
#[derive(Debug, Clone)]
pub(crate) struct Bf16Weights {
    /// `[tile][input pair][32 channels][2 inputs]` as bf16 bits: for each pair of inputs, the
    /// tile's 32 channels' two weights side by side, as one 128-byte load. Zero past `in_dim`
    /// and `out_dim`.
    packed: Vec<u16>,
    in_dim: usize,
    out_dim: usize,
    /// `in_dim` rounded up to whole pairs.
    stride: usize,
    kernel: Kernel,
}

impl Bf16Weights {
    pub(crate) fn from_rows(weight: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(weight.len(), out_dim * in_dim, "weight is out x in");
        let stride = in_dim.next_multiple_of(PAIR);
        let mut packed = vec![0u16; out_dim.div_ceil(TILE) * TILE * stride];
        for (o, row) in weight.chunks_exact(in_dim.max(1)).take(out_dim).enumerate() {
            let (tile, lane) = (o / TILE, o % TILE);
            for (k, w) in row.iter().enumerate() {
                packed[((tile * stride / PAIR + k / PAIR) * TILE + lane) * PAIR + k % PAIR] = to_bf16(*w);
            }
        }
        Self {
            packed,
            in_dim,
            out_dim,
            stride,
            kernel: Kernel::detect(),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        2 * self.packed.len()
    }
}

/// Input rows rounded to bf16, `[rows][stride]`.
pub(crate) struct Rows {
    bits: Vec<u16>,
}

impl Packed for Bf16Weights {
    type Rows = Rows;

    fn in_dim(&self) -> usize {
        self.in_dim
    }

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn prepare(&self, x: &[f32], rows: usize) -> Rows {
        let mut bits = vec![0u16; rows * self.stride];
        bits.par_chunks_mut(self.stride)
            .zip(x.par_chunks(self.in_dim.max(1)))
            .for_each(|(out, row)| self.kernel.round_row(row, out));
        Rows { bits }
    }

    fn run(&self, t: usize, rows: &Rows, first: usize, n: usize) -> [[f32; TILE]; ROWS] {
        let stride = self.stride;
        let weights = &self.packed[t * TILE * stride..(t + 1) * TILE * stride];
        let inputs = &rows.bits[first * stride..(first + n) * stride];
        assert!(
            (1..=ROWS).contains(&n) && inputs.len() == n * stride && weights.len() == TILE * stride,
            "a tile and up to four rows of the same padded width"
        );
        match self.kernel {
            Kernel::Portable => run_portable(weights, inputs, stride, n),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(token) => token.run(weights, inputs, stride, n),
        }
    }
}

/// f32 to bf16 bits, rounding to nearest even (as `vcvtneps2bf16`); NaN stays NaN.
fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

fn from_bf16(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

fn run_portable(weights: &[u16], inputs: &[u16], stride: usize, n: usize) -> [[f32; TILE]; ROWS] {
    let mut out = [[0f32; TILE]; ROWS];
    for (row, out) in inputs.chunks_exact(stride).zip(out.iter_mut()).take(n) {
        for (lane, y) in out.iter_mut().enumerate() {
            *y = row
                .iter()
                .enumerate()
                .map(|(k, a)| from_bf16(*a) * from_bf16(weights[((k / PAIR) * TILE + lane) * PAIR + k % PAIR]))
                .sum();
        }
    }
    out
}

/// Which kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Bf16),
}

impl Kernel {
    fn detect() -> Self {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = x86::Bf16::detect() {
                return Kernel::Avx512(token);
            }
            Kernel::Portable
        })
    }

    /// One row to bf16 bits, zero-padded to the stride.
    fn round_row(self, row: &[f32], out: &mut [u16]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(token) => token.round_row(row, out),
            _ => {
                out.iter_mut().zip(row).for_each(|(d, v)| *d = to_bf16(*v));
                out[row.len()..].fill(0);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PAIR, ROWS, TILE};
    use std::arch::x86_64::{
        __m256bh, __m512, __m512bh, _mm512_cvtneps_pbh, _mm512_dpbf16_ps, _mm512_loadu_si512, _mm512_maskz_loadu_ps,
        _mm512_set1_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// Proof that the CPU has AVX512F and AVX512_BF16: only [`Bf16::detect`] makes one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Bf16(());

    impl Bf16 {
        pub(super) fn detect() -> Option<Self> {
            let has =
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16");
            has.then_some(Bf16(()))
        }

        pub(super) fn round_row(self, row: &[f32], out: &mut [u16]) {
            assert!(out.len() >= row.len(), "the row fits its padded copy");
            // SAFETY: a `Bf16` exists only where `detect` saw avx512f and avx512bf16; the
            // lengths were asserted above.
            unsafe { round_row(row, out) }
        }

        pub(super) fn run(self, weights: &[u16], inputs: &[u16], stride: usize, n: usize) -> [[f32; TILE]; ROWS] {
            // SAFETY: as in `round_row`; the caller asserted `weights` holds `TILE * stride`
            // values and `inputs` `n * stride`, `1 <= n <= ROWS`, `stride` even.
            unsafe { for_row_count!(n, kernel(weights, inputs, stride)) }
        }
    }

    /// # Safety
    /// The CPU must support avx512f and avx512bf16; `out.len() >= row.len()`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn round_row(row: &[f32], out: &mut [u16]) {
        out[row.len()..].fill(0);
        for start in (0..row.len()).step_by(16) {
            let n = (row.len() - start).min(16);
            let mask = ((1u32 << n) - 1) as u16;
            // SAFETY: the mask selects only elements below `row.len()`.
            let v = unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().add(start)) };
            // SAFETY: `__m256bh` is 16 plain u16 lanes.
            let lanes = unsafe { std::mem::transmute::<__m256bh, [u16; 16]>(_mm512_cvtneps_pbh(v)) };
            out[start..start + n].copy_from_slice(&lanes[..n]);
        }
    }

    /// `R` rows x 32 channels: per pair of inputs, one broadcast of the row's pair and two
    /// `vdpbf16ps` into f32 accumulators.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512bf16; `weights` holds `TILE * stride` values,
    /// `inputs` at least `R * stride`, `stride` even.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn kernel<const R: usize>(weights: &[u16], inputs: &[u16], stride: usize) -> [[f32; TILE]; ROWS] {
        let (w, a) = (weights.as_ptr(), inputs.as_ptr());
        let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for k in (0..stride).step_by(PAIR) {
            // SAFETY: `k < stride`, so the 64 values at `k * TILE` lie in the tile's
            // `TILE * stride`, and the pair at `r * stride + k` in row `r < R`. `__m512bh` and
            // `__m512i` are both 512 bits of plain lanes.
            unsafe {
                let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(k * TILE).cast()));
                let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(k * TILE + 32).cast()));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let pair = a.add(r * stride + k).cast::<i32>().read_unaligned();
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, w0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, w1);
                }
            }
        }
        let mut out = [[0f32; TILE]; ROWS];
        for (out, acc) in out.iter_mut().zip(&acc) {
            // SAFETY: each `out` row holds 32 floats: two registers of 16.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr(), acc[0]);
                _mm512_storeu_ps(out.as_mut_ptr().add(16), acc[1]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        crate::testing::random_tensor(&[n], seed).to_vec1().unwrap()
    }

    #[test]
    fn rounding_is_to_nearest_even_as_the_cpu_does() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        let x = random(37, 9);
        let mut native = vec![0u16; 38];
        Kernel::detect().round_row(&x, &mut native);
        let portable: Vec<u16> = x.iter().map(|v| to_bf16(*v)).chain([0]).collect();
        assert_eq!(native, portable);
    }

    #[test]
    fn bf16_products_are_close_to_f32_and_the_kernels_agree() {
        for (rows, out, inp) in [(1, 8, 3), (7, 40, 384), (33, 96, 131)] {
            let (x, w) = (random(rows * inp, 1), random(out * inp, 2));
            let packed = Bf16Weights::from_rows(&w, out, inp);
            let got = super::super::matmul(&packed, &x, rows, None, None, None);
            for r in 0..rows {
                for o in 0..out {
                    let want: f32 = (0..inp).map(|k| x[r * inp + k] * w[o * inp + k]).sum();
                    let g = got[r * out + o];
                    // Two roundings to 8 significant bits per product.
                    assert!((g - want).abs() <= 0.01 * (inp as f32).sqrt(), "{g} vs {want}");
                }
            }
            let prepared = packed.prepare(&x, rows);
            let n = ROWS.min(rows);
            let fast = packed.run(0, &prepared, 0, n);
            let stride = packed.stride;
            let slow = run_portable(&packed.packed[..TILE * stride], &prepared.bits[..n * stride], stride, n);
            for (f, s) in fast.iter().flatten().zip(slow.iter().flatten()) {
                assert!((f - s).abs() <= 1e-4 * s.abs().max(1.0), "{f} vs {s}");
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_output_alone_and_in_any_batch() {
        let (rows, out, inp) = (75, 40, 70);
        let (x, w, b) = (random(rows * inp, 3), random(out * inp, 4), random(out, 5));
        let packed = Bf16Weights::from_rows(&w, out, inp);
        let batched = super::super::matmul(&packed, &x, rows, Some(&b), None, None);
        for r in 0..rows {
            let alone = super::super::matmul(&packed, &x[r * inp..(r + 1) * inp], 1, Some(&b), None, None);
            assert_eq!(alone, batched[r * out..(r + 1) * out].to_vec(), "row {r}");
        }
    }
}
