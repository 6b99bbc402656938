//! Linear layers with weights packed at load for the CPU's narrow arithmetic: int8 ([`int8`]) and
//! bfloat16 ([`bf16`]). Both run the same way: the input rows are prepared once (quantized or
//! rounded, each row on its own, so a text's output never depends on its batch), then a
//! register-blocked micro-kernel produces 4 rows x 32 output channels at a time from weights
//! laid out in the order it reads them. Everything around the linear layers stays f32.

/// Calls `$kernel::<R>(args)` with `R` the row count `$n` (1 to [`ROWS`]): one specialization
/// per count, so that each keeps its accumulators in registers.
macro_rules! for_row_count {
    ($n:expr, $kernel:ident($($arg:expr),*)) => {
        match $n {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            _ => $kernel::<4>($($arg),*),
        }
    };
}

mod bf16;
mod int8;

use rayon::prelude::*;

pub use bf16::bf16_native;

/// Output channels per packed tile: two 16-lane registers.
const TILE: usize = 32;
/// Token rows one micro-kernel call keeps in registers.
const ROWS: usize = 4;
/// At most this many rows per parallel job, so a job's activations stay in L2 while the
/// weight tiles go by.
const JOB_ROWS: usize = 64;

/// The narrow formats a linear layer's weights can be packed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Weights int8 per output channel and block of 32 inputs; activations u8 per block of
    /// each row.
    Int8,
    /// Weights and activations rounded to bfloat16, products summed in f32.
    Bf16,
}

impl Format {
    /// The kernel this CPU runs the format's products on: `vnni`, `avxvnni`, `avx2` or `portable` for
    /// int8; `avx512-bf16` or `portable` for bf16.
    pub fn kernel(self) -> &'static str {
        match self {
            Format::Int8 => int8::kernel_name(),
            Format::Bf16 if bf16_native() => "avx512-bf16",
            Format::Bf16 => "portable",
        }
    }

    /// The name `--dtype` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Int8 => "int8",
            Format::Bf16 => "bfloat16",
        }
    }
}

/// A `[out, in]` weight matrix packed in one of the [`Format`]s.
#[derive(Debug, Clone)]
pub struct PackedWeights(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Int8(int8::Int8Weights),
    Bf16(bf16::Bf16Weights),
}

impl PackedWeights {
    /// Packs PyTorch's `[out, in]` weight (row-major) for the fastest kernel this CPU runs.
    pub fn from_rows(format: Format, weight: &[f32], out_dim: usize, in_dim: usize) -> Self {
        match format {
            Format::Int8 => PackedWeights(Inner::Int8(int8::Int8Weights::from_rows(weight, out_dim, in_dim))),
            Format::Bf16 => PackedWeights(Inner::Bf16(bf16::Bf16Weights::from_rows(weight, out_dim, in_dim))),
        }
    }

    /// The format packed in.
    pub fn format(&self) -> Format {
        match &self.0 {
            Inner::Int8(_) => Format::Int8,
            Inner::Bf16(_) => Format::Bf16,
        }
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        match &self.0 {
            Inner::Int8(w) => w.out_dim(),
            Inner::Bf16(w) => w.out_dim(),
        }
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        match &self.0 {
            Inner::Int8(w) => w.in_dim(),
            Inner::Bf16(w) => w.in_dim(),
        }
    }

    /// Bytes held (weights and their scales).
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Inner::Int8(w) => w.bytes(),
            Inner::Bf16(w) => w.bytes(),
        }
    }

    /// `x W^T (+ bias) (+ residual)` for `x` of `rows x in_dim` (row-major); `residual` is
    /// `rows x out_dim`. Returns `rows x out_dim`; `then` (an activation), where given, runs on
    /// each job's rows while they are in cache.
    pub fn matmul(
        &self,
        x: &[f32],
        rows: usize,
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        then: Option<fn(&mut [f32])>,
    ) -> Vec<f32> {
        match &self.0 {
            Inner::Int8(w) => matmul(w, x, rows, bias, residual, then),
            Inner::Bf16(w) => matmul(w, x, rows, bias, residual, then),
        }
    }
}

/// What a packed format gives the shared driver: its input rows prepared, and one tile of
/// outputs for up to [`ROWS`] of them.
trait Packed: Sync {
    /// The prepared input rows.
    type Rows: Sync;

    fn in_dim(&self) -> usize;

    fn out_dim(&self) -> usize;

    fn prepare(&self, x: &[f32], rows: usize) -> Self::Rows;

    /// Rows `first..first + n` (`n <= ROWS`) times output tile `t` (channels `32 t..32 t + 32`),
    /// before bias; entries past `n` rows or past `out_dim` are unspecified.
    fn run(&self, t: usize, rows: &Self::Rows, first: usize, n: usize) -> [[f32; TILE]; ROWS];
}

fn matmul<P: Packed>(
    p: &P,
    x: &[f32],
    rows: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    then: Option<fn(&mut [f32])>,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * p.in_dim(), "x is rows x in");
    let out_dim = p.out_dim();
    assert!(bias.is_none_or(|b| b.len() == out_dim), "one bias per output");
    assert!(
        residual.is_none_or(|r| r.len() == rows * out_dim),
        "residual is rows x out"
    );
    let mut y = vec![0f32; rows * out_dim];
    if rows == 0 || out_dim == 0 {
        return y;
    }
    let prepared = p.prepare(x, rows);
    // Jobs own whole rows of the output; within one, each weight tile stays in L1 while the
    // job's rows go by four at a time. Every row meets the same sequence of operations whichever
    // job and group it falls in, so its output does not depend on its batch.
    let job_rows = rows
        .div_ceil(rayon::current_num_threads())
        .next_multiple_of(ROWS)
        .min(JOB_ROWS);
    y.par_chunks_mut(job_rows * out_dim).enumerate().for_each(|(job, y)| {
        let first = job * job_rows;
        let count = y.len() / out_dim;
        for t in 0..out_dim.div_ceil(TILE) {
            let width = TILE.min(out_dim - t * TILE);
            for start in (0..count).step_by(ROWS) {
                let n = ROWS.min(count - start);
                let tile = p.run(t, &prepared, first + start, n);
                for (r, values) in tile.iter().take(n).enumerate() {
                    let at = (start + r) * out_dim + t * TILE;
                    y[at..at + width].copy_from_slice(&values[..width]);
                }
            }
        }
        for (r, out) in y.chunks_exact_mut(out_dim).enumerate() {
            if let Some(bias) = bias {
                out.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
            if let Some(res) = residual {
                let row = (first + r) * out_dim;
                out.iter_mut().zip(&res[row..row + out_dim]).for_each(|(v, r)| *v += r);
            }
        }
        if let Some(then) = then {
            then(y);
        }
    });
    y
}
