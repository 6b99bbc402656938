//! Int8 linear layers for the CPU: weights quantized once at load, one scale per output channel;
//! activations quantized on the fly with one scale per block of 32 features of a token row (a
//! scale per whole row let BERT's few outlier features crush the rest: all-MiniLM-L6-v2 fell to
//! cosine 0.985), so that a text's vector never depends on the other texts of its batch.
//! Products accumulate in i32 per block and are rescaled to f32 with the bias (and residual)
//! added; everything around the linear layers stays f32.
//!
//! Activations are asymmetric u8 per block (`a ~ min + q s`); the minimum comes back through the
//! block's weight sum: `sum a w = s sum q w + min sum w`. The integer products run on a
//! register-blocked micro-kernel (4 rows x 32 output channels held in registers while a block of
//! 32 inputs goes by) over weights packed at load in the order the kernel reads them, so each
//! weight byte loaded serves four rows and each activation byte 32 channels. Four kernels share
//! that layout and compute the same integer sums, picked at run time: AVX512-VNNI (`vpdpbusd` on
//! 512-bit registers), AVX-VNNI (`vpdpbusd` on 256-bit ones), AVX2 (`vpmaddubsw` + `vpmaddwd`),
//! and a portable loop.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::{Packed, ROWS, TILE};

/// Inputs per activation scale; every row is zero-padded to whole blocks.
const BLOCK: usize = 32;
/// Bytes one i32 lane of `vpdpbusd` sums: the inputs packed side by side per output channel.
const GROUP: usize = 4;

/// A `[out, in]` weight matrix in int8, one scale per output channel, packed for the kernels.
#[derive(Debug, Clone)]
pub(crate) struct Int8Weights {
    /// `[tile][input group][32 channels][4 inputs]`: for each group of four inputs, the tile's
    /// 32 channels' four weights side by side, as one 128-byte load. Zero past `in_dim` and
    /// `out_dim`.
    packed: Vec<i8>,
    /// `[tile][block][32 channels]`: `w ~ q * scale` per output channel and block of 32 inputs
    /// (one scale per channel moved all-MiniLM-L6-v2 from cosine 0.9990 to 0.9964).
    scales: Vec<f32>,
    /// `[tile][block][32 channels]`: the block's weights summed (`scale * sum q`), which the
    /// block's activation minimum multiplies.
    sums: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
    /// `in_dim` rounded up to whole blocks.
    stride: usize,
    /// The micro-kernel this CPU runs them on.
    kernel: Kernel,
}

impl Int8Weights {
    /// Quantizes PyTorch's `[out, in]` weight (row-major) symmetrically per output channel and
    /// block of inputs, for the fastest kernel this CPU runs.
    pub(crate) fn from_rows(weight: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(weight.len(), out_dim * in_dim, "weight is out x in");
        let stride = in_dim.div_ceil(BLOCK) * BLOCK;
        let (tiles, blocks) = (out_dim.div_ceil(TILE), stride / BLOCK);
        let mut packed = vec![0i8; tiles * TILE * stride];
        let mut scales = vec![1f32; tiles * blocks * TILE];
        let mut sums = vec![0f32; tiles * blocks * TILE];
        let levels = 127.0;
        for (o, row) in weight.chunks_exact(in_dim.max(1)).take(out_dim).enumerate() {
            let (tile, lane) = (o / TILE, o % TILE);
            for (b, values) in row.chunks(BLOCK).enumerate() {
                let max = values.iter().fold(0f32, |m, w| m.max(w.abs()));
                let scale = if max > 0.0 { max / levels } else { 1.0 };
                let mut sum = 0i32;
                for (i, w) in values.iter().enumerate() {
                    let q = (w / scale).round().clamp(-levels, levels) as i8;
                    let k = b * BLOCK + i;
                    packed[((tile * stride / GROUP + k / GROUP) * TILE + lane) * GROUP + k % GROUP] = q;
                    sum += i32::from(q);
                }
                let at = (tile * blocks + b) * TILE + lane;
                scales[at] = scale;
                sums[at] = scale * sum as f32;
            }
        }
        Self {
            packed,
            scales,
            sums,
            in_dim,
            out_dim,
            stride,
            kernel: Kernel::detect(),
        }
    }

    /// Bytes held (weights, scales and sums).
    pub(crate) fn bytes(&self) -> usize {
        self.packed.len() + 4 * (self.scales.len() + self.sums.len())
    }

    /// One tile's share of the packed weights, channel scales and block sums.
    fn tile(&self, t: usize) -> Tile<'_> {
        let blocks = self.stride / BLOCK;
        Tile {
            packed: &self.packed[t * TILE * self.stride..(t + 1) * TILE * self.stride],
            scales: &self.scales[t * blocks * TILE..(t + 1) * blocks * TILE],
            sums: &self.sums[t * blocks * TILE..(t + 1) * blocks * TILE],
        }
    }
}

impl Packed for Int8Weights {
    type Rows = Activations;

    fn in_dim(&self) -> usize {
        self.in_dim
    }

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn prepare(&self, x: &[f32], rows: usize) -> Activations {
        Activations::quantize(x, rows, self.in_dim, self.stride, self.kernel)
    }

    fn run(&self, t: usize, rows: &Activations, first: usize, n: usize) -> [[f32; TILE]; ROWS] {
        self.kernel.run(&self.tile(t), &rows.rows(first, n))
    }
}

/// One output tile of [`Int8Weights`].
struct Tile<'a> {
    packed: &'a [i8],
    scales: &'a [f32],
    sums: &'a [f32],
}

/// A batch of rows quantized to u8 per block: `a ~ min + q * scale`.
pub(crate) struct Activations {
    q: Vec<u8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
    stride: usize,
}

impl Activations {
    fn quantize(x: &[f32], rows: usize, in_dim: usize, stride: usize, kernel: Kernel) -> Self {
        let blocks = stride / BLOCK;
        let mut this = Self {
            q: vec![0u8; rows * stride],
            scales: vec![0f32; rows * blocks],
            mins: vec![0f32; rows * blocks],
            stride,
        };
        this.q
            .par_chunks_mut(stride)
            .zip(this.scales.par_chunks_mut(blocks))
            .zip(this.mins.par_chunks_mut(blocks))
            .zip(x.par_chunks(in_dim.max(1)))
            .for_each(|(((q, scales), mins), row)| kernel.quantize_row(row, q, scales, mins));
        this
    }

    /// `n` rows from `first`.
    fn rows(&self, first: usize, n: usize) -> RowGroup<'_> {
        let blocks = self.stride / BLOCK;
        RowGroup {
            q: &self.q[first * self.stride..(first + n) * self.stride],
            scales: &self.scales[first * blocks..(first + n) * blocks],
            mins: &self.mins[first * blocks..(first + n) * blocks],
            stride: self.stride,
            n,
        }
    }
}

/// Up to [`ROWS`] consecutive quantized rows.
struct RowGroup<'a> {
    q: &'a [u8],
    scales: &'a [f32],
    mins: &'a [f32],
    stride: usize,
    n: usize,
}

/// Quantizes one activation row to u8 per block of 32 features, asymmetrically (`a ~ min + q *
/// scale`, the block's whole range over 256 levels: activations after GELU are nearly all
/// positive, and a symmetric code would waste half its levels), with each block's scale and
/// minimum in `scales` and `mins`; the padding past the row is 0 and meets zero weights.
///
/// Written in lanes the compiler vectorizes; the SIMD kernels compile it with their target
/// features (as plain x86-64 it takes as long as the int8 products: `roundf` calls).
#[inline(always)]
fn quantize_row(row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
    out[row.len()..].fill(0);
    let blocks = row.chunks(BLOCK).zip(out.chunks_mut(BLOCK));
    for ((values, q), (scale, min)) in blocks.zip(scales.iter_mut().zip(mins.iter_mut())) {
        let (mut lo, mut hi) = ([f32::INFINITY; BLOCK], [f32::NEG_INFINITY; BLOCK]);
        for ((lo, hi), v) in lo.iter_mut().zip(hi.iter_mut()).zip(values) {
            (*lo, *hi) = (*v, *v);
        }
        // A halving tree, which vectorizes where a running fold stays scalar.
        let mut width = BLOCK / 2;
        while width > 0 {
            for i in 0..width {
                lo[i] = lo[i].min(lo[i + width]);
                hi[i] = hi[i].max(hi[i + width]);
            }
            width /= 2;
        }
        let (lo, hi) = (lo[0], hi[0]);
        *min = lo;
        *scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let inverse = 1.0 / *scale;
        for (d, v) in q.iter_mut().zip(values) {
            *d = ((v - lo) * inverse).round_ties_even().clamp(0.0, 255.0) as i32 as u8;
        }
    }
}

/// The name of the kernel [`Int8Weights::from_rows`] packs for on this CPU.
pub(crate) fn kernel_name() -> &'static str {
    Kernel::detect().name()
}

/// Which micro-kernel this CPU runs; the SIMD ones exist only where detection saw their
/// instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    AvxVnni(x86::AvxVnni),
    #[cfg(target_arch = "x86_64")]
    Vnni(x86::Vnni),
}

impl Kernel {
    /// The fastest kernel this CPU runs, or the one `TESSERA_INT8_KERNEL` names (`vnni`,
    /// `avxvnni`, `avx2`, `portable`: a diagnostic, to compare them on one machine) where the CPU runs it.
    fn detect() -> Self {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Self::available();
            let Ok(wanted) = std::env::var("TESSERA_INT8_KERNEL") else {
                return available[0];
            };
            match available.iter().find(|k| k.name() == wanted) {
                Some(kernel) => *kernel,
                None => {
                    let names: Vec<_> = available.iter().map(|k| k.name()).collect();
                    tracing::warn!(
                        "TESSERA_INT8_KERNEL={wanted} is not one this CPU runs ({}); using {}",
                        names.join(", "),
                        names[0]
                    );
                    available[0]
                }
            }
        })
    }

    /// The kernels this CPU runs, fastest first.
    fn available() -> Vec<Self> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            kernels.extend(x86::Vnni::detect().map(Kernel::Vnni));
            kernels.extend(x86::AvxVnni::detect().map(Kernel::AvxVnni));
            kernels.extend(x86::Avx2::detect().map(Kernel::Avx2));
        }
        kernels.push(Kernel::Portable);
        kernels
    }

    fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni(_) => "avxvnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(_) => "vnni",
        }
    }

    /// [`quantize_row`] compiled for the kernel's CPU.
    fn quantize_row(self, row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
        match self {
            Kernel::Portable => quantize_row(row, out, scales, mins),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(avx2) => avx2.quantize_row(row, out, scales, mins),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni(avx_vnni) => avx_vnni.avx2().quantize_row(row, out, scales, mins),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) => vnni.quantize_row(row, out, scales, mins),
        }
    }

    /// `rows x 32` outputs of one tile (before bias), each `sum_b (s_ab s_wb sum_k q_a q_w +
    /// min_b s_wb sum_k q_w)`.
    fn run(self, tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
        let blocks = rows.stride / BLOCK;
        assert!(
            (1..=ROWS).contains(&rows.n)
                && rows.q.len() == rows.n * rows.stride
                && rows.scales.len() == rows.n * blocks
                && rows.mins.len() == rows.n * blocks
                && tile.packed.len() == TILE * rows.stride
                && tile.sums.len() == TILE * blocks
                && tile.scales.len() == TILE * blocks,
            "a tile and up to four rows of the same padded width"
        );
        match self {
            Kernel::Portable => run_portable(tile, rows),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(avx2) => avx2.run(tile, rows),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni(avx_vnni) => avx_vnni.run(tile, rows),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) => vnni.run(tile, rows),
        }
    }
}

/// The kernels' arithmetic in plain Rust, in the same order (i32 per block, then f32).
fn run_portable(tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
    let blocks = rows.stride / BLOCK;
    let mut out = [[0f32; TILE]; ROWS];
    for (r, out) in out.iter_mut().take(rows.n).enumerate() {
        let a = &rows.q[r * rows.stride..(r + 1) * rows.stride];
        for b in 0..blocks {
            // The 32 channels' sums side by side, over the weights in the order they lie.
            let mut dots = [0i32; TILE];
            for (inputs, weights) in a[b * BLOCK..(b + 1) * BLOCK]
                .chunks_exact(GROUP)
                .zip(tile.packed[b * BLOCK * TILE..(b + 1) * BLOCK * TILE].chunks_exact(GROUP * TILE))
            {
                for (dot, w) in dots.iter_mut().zip(weights.chunks_exact(GROUP)) {
                    *dot += inputs
                        .iter()
                        .zip(w)
                        .map(|(a, w)| i32::from(*a) * i32::from(*w))
                        .sum::<i32>();
                }
            }
            let (scale, min) = (rows.scales[r * blocks + b], rows.mins[r * blocks + b]);
            let channels = b * TILE..(b + 1) * TILE;
            for (((y, dot), c), s) in out
                .iter_mut()
                .zip(dots)
                .zip(&tile.scales[channels.clone()])
                .zip(&tile.sums[channels])
            {
                *y += dot as f32 * (c * scale);
                *y += s * min;
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{quantize_row, RowGroup, Tile, BLOCK, GROUP, ROWS, TILE};
    use std::arch::x86_64::{
        __m256, __m256i, __m512, __m512i, __mmask16, _mm256_add_epi32, _mm256_and_si256, _mm256_cvtepi32_ps,
        _mm256_dpbusd_avx_epi32, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_maddubs_epi16, _mm256_mul_ps, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi8, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_setzero_si256, _mm256_srli_epi16, _mm256_storeu_ps, _mm512_cvtepi32_ps,
        _mm512_cvtps_epi32, _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_mask_blend_ps, _mm512_maskz_cvtusepi32_epi8, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_min_ps,
        _mm512_mul_ps, _mm512_reduce_max_ps, _mm512_reduce_min_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_setzero_si512, _mm512_storeu_ps, _mm512_sub_ps, _mm_storeu_si128,
    };

    /// Proof that the CPU has AVX512F and AVX512-VNNI: only [`Vnni::detect`] makes one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Vnni(());

    impl Vnni {
        pub(super) fn detect() -> Option<Self> {
            let has =
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vnni");
            has.then_some(Vnni(()))
        }

        /// [`quantize_row`] on 512-bit registers, two per block (masked past the row's end).
        pub(super) fn quantize_row(self, row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
            assert!(
                out.len() == scales.len() * BLOCK && mins.len() == scales.len() && row.len() <= out.len(),
                "one scale and minimum per block of the padded row"
            );
            // SAFETY: a `Vnni` exists only where `detect` saw avx512f at run time; the lengths
            // were asserted above.
            unsafe { quantize_avx512(row, out, scales, mins) }
        }

        pub(super) fn run(self, tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
            // SAFETY: a `Vnni` exists only where `detect` saw avx512f and avx512vnni at run
            // time; `Kernel::run` asserted the slice lengths the kernel reads within.
            unsafe { for_row_count!(rows.n, vnni(tile, rows)) }
        }
    }

    /// # Safety
    /// The CPU must support avx512f; `out` holds `BLOCK` bytes per entry of `scales` and `mins`,
    /// and at least `row.len()`.
    #[target_feature(enable = "avx512f")]
    unsafe fn quantize_avx512(row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
        out[row.len()..].fill(0);
        for (b, (scale, min)) in scales.iter_mut().zip(mins.iter_mut()).enumerate() {
            let start = b * BLOCK;
            let halves: [(usize, __mmask16); 2] = std::array::from_fn(|h| {
                let from = start + 16 * h;
                let n = row.len().saturating_sub(from).min(16);
                (from, ((1u32 << n) - 1) as __mmask16)
            });
            // SAFETY: the masks select only elements below `row.len()`.
            let v = halves.map(|(from, mask)| unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_add(from)) });
            let (lo, hi) = (
                _mm512_min_ps(
                    _mm512_mask_blend_ps(halves[0].1, _mm512_set1_ps(f32::INFINITY), v[0]),
                    _mm512_mask_blend_ps(halves[1].1, _mm512_set1_ps(f32::INFINITY), v[1]),
                ),
                _mm512_max_ps(
                    _mm512_mask_blend_ps(halves[0].1, _mm512_set1_ps(f32::NEG_INFINITY), v[0]),
                    _mm512_mask_blend_ps(halves[1].1, _mm512_set1_ps(f32::NEG_INFINITY), v[1]),
                ),
            );
            let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
            *min = lo;
            *scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            let (shift, inverse) = (_mm512_set1_ps(lo), _mm512_set1_ps(1.0 / *scale));
            for ((from, mask), v) in halves.into_iter().zip(v) {
                let q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(v, shift), inverse));
                // SAFETY: `from + 16 <= out.len()` (whole blocks); lanes past the row are
                // zeroed by the mask.
                unsafe { _mm_storeu_si128(out.as_mut_ptr().add(from).cast(), _mm512_maskz_cvtusepi32_epi8(mask, q)) };
            }
        }
    }

    /// `R` rows x 32 channels: per block of 32 inputs, eight `vpdpbusd` steps of four inputs
    /// into i32 sums, then those sums scaled into f32 accumulators with the minimum's term.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512vnni; the slices must have the lengths
    /// `Kernel::run` asserts, with `rows.n >= R`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn vnni<const R: usize>(tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
        let (stride, blocks) = (rows.stride, rows.stride / BLOCK);
        let (w, a) = (tile.packed.as_ptr(), rows.q.as_ptr());
        let mut f: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for b in 0..blocks {
            let mut acc: [[__m512i; 2]; R] = [[_mm512_setzero_si512(); 2]; R];
            for g in 0..BLOCK / GROUP {
                let k = b * BLOCK + g * GROUP;
                // SAFETY: `k < stride`, so the 128 bytes at `k * TILE` lie in the tile's
                // `TILE * stride` bytes, and the four at `r * stride + k` in row `r < R`.
                unsafe {
                    let w0 = _mm512_loadu_si512(w.add(k * TILE).cast());
                    let w1 = _mm512_loadu_si512(w.add(k * TILE + 64).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_epi32(a.add(r * stride + k).cast::<i32>().read_unaligned());
                        acc[0] = _mm512_dpbusd_epi32(acc[0], x, w0);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], x, w1);
                    }
                }
            }
            let (block_sums, block_scales) = (
                &tile.sums[b * TILE..(b + 1) * TILE],
                &tile.scales[b * TILE..(b + 1) * TILE],
            );
            // SAFETY: 16 floats at 0 and 16 of the block's 32 sums and 32 scales.
            let (s0, s1, c0, c1) = unsafe {
                (
                    _mm512_loadu_ps(block_sums.as_ptr()),
                    _mm512_loadu_ps(block_sums.as_ptr().add(16)),
                    _mm512_loadu_ps(block_scales.as_ptr()),
                    _mm512_loadu_ps(block_scales.as_ptr().add(16)),
                )
            };
            for (r, (f, acc)) in f.iter_mut().zip(&acc).enumerate() {
                let scale = _mm512_set1_ps(rows.scales[r * blocks + b]);
                let min = _mm512_set1_ps(rows.mins[r * blocks + b]);
                let (scale0, scale1) = (_mm512_mul_ps(c0, scale), _mm512_mul_ps(c1, scale));
                f[0] = _mm512_fmadd_ps(s0, min, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[0]), scale0, f[0]));
                f[1] = _mm512_fmadd_ps(s1, min, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[1]), scale1, f[1]));
            }
        }
        let mut out = [[0f32; TILE]; ROWS];
        for (out, f) in out.iter_mut().zip(&f) {
            // SAFETY: each `out` row holds 32 floats: two registers of 16.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr(), f[0]);
                _mm512_storeu_ps(out.as_mut_ptr().add(16), f[1]);
            }
        }
        out
    }

    /// Proof that the CPU has AVX2, FMA and AVX-VNNI: only [`AvxVnni::detect`] makes one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct AvxVnni(());

    impl AvxVnni {
        pub(super) fn detect() -> Option<Self> {
            let has = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("avxvnni");
            has.then_some(AvxVnni(()))
        }

        /// Its AVX2 half: `detect` saw avx2 and fma too.
        pub(super) fn avx2(self) -> Avx2 {
            Avx2(())
        }

        pub(super) fn run(self, tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
            // SAFETY: an `AvxVnni` exists only where `detect` saw avx2, fma and avxvnni at run
            // time; `Kernel::run` asserted the slice lengths the kernel reads within.
            unsafe { for_row_count!(rows.n, avx_vnni(tile, rows)) }
        }
    }

    /// Proof that the CPU has AVX2 and FMA: only [`Avx2::detect`] makes one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Avx2(());

    impl Avx2 {
        pub(super) fn detect() -> Option<Self> {
            let has = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            has.then_some(Avx2(()))
        }

        pub(super) fn quantize_row(self, row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
            #[target_feature(enable = "avx2,fma")]
            fn compiled(row: &[f32], out: &mut [u8], scales: &mut [f32], mins: &mut [f32]) {
                quantize_row(row, out, scales, mins)
            }
            // SAFETY: an `Avx2` exists only where `detect` saw avx2 and fma at run time.
            unsafe { compiled(row, out, scales, mins) }
        }

        pub(super) fn run(self, tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
            // SAFETY: an `Avx2` exists only where `detect` saw avx2 and fma at run time;
            // `Kernel::run` asserted the slice lengths the kernel reads within.
            unsafe { for_row_count!(rows.n, avx2(tile, rows)) }
        }
    }

    /// [`vnni`] on 256-bit registers (8 channels each, four per tile), for CPUs with AVX-VNNI
    /// (`$dot` is the VEX `vpdpbusd`) or AVX2 (`$dot` is `vpmaddubsw` + `vpmaddwd` on each
    /// activation split in two, since `vpmaddubsw` saturates a pair's sum at 32767, which
    /// 2 x 255 x 127 passes). Every kernel gives the same integer sums: weights in 7 bits (ONNX
    /// Runtime's `reduce_range` for the same instructions) fell to cosine 0.9977 on
    /// all-MiniLM-L6-v2 and 0.9951 on a DistilBERT, activations in 7 bits to 0.9973.
    macro_rules! kernel_256 {
        ($name:ident, $features:literal, |$acc:ident, $x:ident, $w:ident| $dot:expr) => {
            /// # Safety
            /// The CPU must support the enabled features; the slices must have the lengths
            /// `Kernel::run` asserts, with `rows.n >= R`.
            #[target_feature(enable = $features)]
            unsafe fn $name<const R: usize>(tile: &Tile<'_>, rows: &RowGroup<'_>) -> [[f32; TILE]; ROWS] {
                let (stride, blocks) = (rows.stride, rows.stride / BLOCK);
                let (w, a) = (tile.packed.as_ptr(), rows.q.as_ptr());
                let mut f: [[__m256; 4]; R] = [[_mm256_setzero_ps(); 4]; R];
                for b in 0..blocks {
                    let mut acc: [[__m256i; 4]; R] = [[_mm256_setzero_si256(); 4]; R];
                    for g in 0..BLOCK / GROUP {
                        let k = b * BLOCK + g * GROUP;
                        // SAFETY: as in `vnni`: the 128 bytes at `k * TILE` lie in the tile, the four
                        // at `r * stride + k` in row `r < R`.
                        unsafe {
                            let ws: [__m256i; 4] =
                                std::array::from_fn(|i| _mm256_loadu_si256(w.add(k * TILE + 32 * i).cast()));
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let x = _mm256_set1_epi32(a.add(r * stride + k).cast::<i32>().read_unaligned());
                                for (acc, w) in acc.iter_mut().zip(ws) {
                                    let ($acc, $x, $w) = (*acc, x, w);
                                    *acc = $dot;
                                }
                            }
                        }
                    }
                    let (block_sums, block_scales) = (
                        &tile.sums[b * TILE..(b + 1) * TILE],
                        &tile.scales[b * TILE..(b + 1) * TILE],
                    );
                    for (r, (f, acc)) in f.iter_mut().zip(&acc).enumerate() {
                        let scale = _mm256_set1_ps(rows.scales[r * blocks + b]);
                        let min = _mm256_set1_ps(rows.mins[r * blocks + b]);
                        for (i, (f, acc)) in f.iter_mut().zip(acc).enumerate() {
                            // SAFETY: 8 floats at `8 i` of the block's 32 sums and 32 scales.
                            let (s, c) = unsafe {
                                (
                                    _mm256_loadu_ps(block_sums.as_ptr().add(8 * i)),
                                    _mm256_loadu_ps(block_scales.as_ptr().add(8 * i)),
                                )
                            };
                            let scale = _mm256_mul_ps(c, scale);
                            *f = _mm256_fmadd_ps(s, min, _mm256_fmadd_ps(_mm256_cvtepi32_ps(*acc), scale, *f));
                        }
                    }
                }
                let mut out = [[0f32; TILE]; ROWS];
                for (out, f) in out.iter_mut().zip(&f) {
                    for (i, f) in f.iter().enumerate() {
                        // SAFETY: 8 floats at `8 i` of the 32-float output row.
                        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *f) };
                    }
                }
                out
            }
        };
    }

    kernel_256!(avx2, "avx2,fma", |acc, x, w| {
        // `a = 2 h + l` with `h = a >> 1 <= 127` and `l = a & 1`: each pair of products then
        // fits `vpmaddubsw`'s i16 (2 x 127 x 127), and `vpmaddwd` weighs the halves by 2 and 1.
        let high = _mm256_and_si256(_mm256_srli_epi16::<1>(x), _mm256_set1_epi8(0x7f));
        let low = _mm256_and_si256(x, _mm256_set1_epi8(1));
        let high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, w), _mm256_set1_epi16(2));
        let low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, w), _mm256_set1_epi16(1));
        _mm256_add_epi32(acc, _mm256_add_epi32(high, low))
    });
    kernel_256!(avx_vnni, "avx2,fma,avxvnni", |acc, x, w| _mm256_dpbusd_avx_epi32(
        acc, x, w
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        crate::testing::random_tensor(&[n], seed).to_vec1().unwrap()
    }

    fn reference(x: &[f32], w: &[f32], rows: usize, out: usize, inp: usize) -> Vec<f32> {
        (0..rows)
            .flat_map(|r| (0..out).map(move |o| (r, o)))
            .map(|(r, o)| (0..inp).map(|k| x[r * inp + k] * w[o * inp + k]).sum())
            .collect()
    }

    #[test]
    fn int8_products_are_close_to_f32_and_the_kernels_agree() {
        for (rows, out, inp) in [(1, 8, 3), (7, 40, 384), (33, 96, 130)] {
            let (x, w) = (random(rows * inp, 1), random(out * inp, 2));
            let q = Int8Weights::from_rows(&w, out, inp);
            let got = super::super::matmul(&q, &x, rows, None, None, None);
            let want = reference(&x, &w, rows, out, inp);
            // Two 8-bit roundings per product: relative to the largest output.
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 0.02 * scale, "{rows}x{out}x{inp}: {g} vs {w}");
            }
            // Every SIMD kernel computes the same integer sums and rescales them in the same
            // order: the same bits. The portable loop rounds its f32 steps unfused.
            let activations = Activations::quantize(&x, rows, inp, q.stride, Kernel::Portable);
            let group = activations.rows(0, ROWS.min(rows));
            let portable = Kernel::Portable.run(&q.tile(0), &group);
            let available = Kernel::available();
            let first = available[0].run(&q.tile(0), &group);
            for kernel in available {
                let fast = kernel.run(&q.tile(0), &group);
                for (f, p) in fast.iter().flatten().zip(portable.iter().flatten()) {
                    assert!((f - p).abs() <= 1e-4 * p.abs().max(1.0), "{kernel:?}: {f} vs {p}");
                }
                if kernel != Kernel::Portable {
                    assert_eq!(fast, first, "{kernel:?} against {:?}", Kernel::available()[0]);
                }
            }
        }
    }

    #[test]
    fn every_kernel_quantizes_activations_alike() {
        for inp in [5, 32, 70, 384] {
            let x = random(3 * inp, 8);
            let stride = inp.div_ceil(BLOCK) * BLOCK;
            let want = Activations::quantize(&x, 3, inp, stride, Kernel::Portable);
            for kernel in Kernel::available() {
                let got = Activations::quantize(&x, 3, inp, stride, kernel);
                assert_eq!(got.q, want.q, "{kernel:?}, {inp} inputs");
                assert_eq!((&got.scales, &got.mins), (&want.scales, &want.mins), "{kernel:?}");
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_output_alone_and_in_any_batch() {
        let (rows, out, inp) = (75, 40, 70);
        let (x, w, b) = (random(rows * inp, 3), random(out * inp, 4), random(out, 5));
        let q = Int8Weights::from_rows(&w, out, inp);
        let batched = super::super::matmul(&q, &x, rows, Some(&b), None, None);
        for r in 0..rows {
            let alone = super::super::matmul(&q, &x[r * inp..(r + 1) * inp], 1, Some(&b), None, None);
            assert_eq!(alone, batched[r * out..(r + 1) * out].to_vec(), "row {r}");
        }
    }

    #[test]
    fn bias_and_residual_are_added() {
        let (out, inp) = (4, 64);
        let (x, w) = (random(inp, 6), random(out * inp, 7));
        let q = Int8Weights::from_rows(&w, out, inp);
        let plain = super::super::matmul(&q, &x, 1, None, None, None);
        let b = [1.0, 2.0, 3.0, 4.0];
        let res = [10.0, 20.0, 30.0, 40.0];
        let with = super::super::matmul(&q, &x, 1, Some(&b), Some(&res), None);
        for o in 0..out {
            assert!((with[o] - (plain[o] + b[o] + res[o])).abs() < 1e-4);
        }
        // One tile of 32 channels: 32 x 64 weights, 32 x 2 block scales and sums.
        assert_eq!(q.bytes(), 32 * 64 + 4 * (64 + 64));
    }
}
