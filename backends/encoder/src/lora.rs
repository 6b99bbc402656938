//! Task adapters (LoRA) applied at run time: a weight `W` with adapters serves task `t` as
//! `W + scale * B_t A_t` without that sum ever being formed. Each sequence of a batch names its
//! task (or none); the base projection runs once over the whole batch, and the rows of each task
//! present get their low-rank term, `scale * (x A_t^T) B_t^T`: `2 * rank * (in + out)`
//! multiply-adds per token and task against the base's `in * out`. Merging the adapters into the weights
//! instead would cost a copy of every adapted weight per task (five for jina-embeddings-v3)
//! and fix each copy to one task, where a batch mixes them.
//!
//! Reference: jina-embeddings-v3's `modeling_lora.py` (`LoRAParametrization.lora_forward`).

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::Linear;
use tessera_core::{Batch, HiddenAct};

use crate::spec::Adapters;

/// Which rows of a batch run with which task adapter, decided once per batch.
#[derive(Debug)]
pub(crate) enum TaskRows {
    /// No sequence has a task.
    None,
    /// Every sequence has this one (the common case: one request's inputs share a task).
    One(usize),
    /// A `[total, tasks * rank]` mask of ones in the columns of each row's task (zeros for rows
    /// without one).
    Mask(Tensor),
}

impl TaskRows {
    /// The mask of `batch` for adapters of `rank` (none when the spec has no adapters or no
    /// sequence has a task).
    pub(crate) fn of(batch: &Batch, adapters: Option<&Adapters>, device: &Device) -> candle_core::Result<Self> {
        let Some(adapters) = adapters else {
            return Ok(Self::None);
        };
        match batch.tasks.split_first() {
            None => return Ok(Self::None),
            Some((&Some(first), rest)) if rest.iter().all(|t| *t == Some(first)) => return Ok(Self::One(first)),
            _ => {}
        }
        let (tasks, rank) = (adapters.tasks.len(), adapters.rank.size());
        let width = tasks * rank;
        let mut mask = vec![0f32; batch.seqs.total_tokens() * width];
        for (range, task) in batch.seqs.ranges().zip(&batch.tasks) {
            if let Some(t) = *task {
                for row in range {
                    mask[row * width + t * rank..row * width + (t + 1) * rank].fill(1.0);
                }
            }
        }
        Ok(Self::Mask(Tensor::from_vec(
            mask,
            (batch.seqs.total_tokens(), width),
            device,
        )?))
    }
}

/// Which kind of weight the adapters are of (their factors' layouts differ).
enum Weight {
    Linear { input: usize, output: usize },
    Embedding { rows: usize, width: usize },
}

/// One weight's adapters, every task side by side: the left factors (`A_t^T`, `[in, rank]`
/// each, for a linear; `A_t`, `[rows, rank]` looked up by id, for an embedding) as one
/// `[in or rows, tasks * rank]` tensor and the right ones (`B_t^T` / `B_t`, scaled by
/// `alpha / rank`) stacked as `[tasks * rank, out]`. A batch's terms are then two matmuls
/// whatever tasks it mixes: `((x left) * mask) right`, the mask keeping each row's own task.
#[derive(Debug)]
pub(crate) struct Lora {
    left: Tensor,
    right: Tensor,
    /// Each task's factors alone, contiguous, for batches of one task.
    each: Vec<(Tensor, Tensor)>,
}

impl Lora {
    /// The adapters of the linear module at `vb` (`input` -> `output`), if the spec has them.
    pub(crate) fn linear(
        vb: &VarBuilder,
        adapters: Option<&Adapters>,
        input: usize,
        output: usize,
    ) -> candle_core::Result<Option<Self>> {
        Self::load(vb, adapters, Weight::Linear { input, output })
    }

    /// The adapters of the embedding table at `vb` (`rows` x `width`), if the spec has them.
    pub(crate) fn embedding(
        vb: &VarBuilder,
        adapters: Option<&Adapters>,
        rows: usize,
        width: usize,
    ) -> candle_core::Result<Option<Self>> {
        Self::load(vb, adapters, Weight::Embedding { rows, width })
    }

    fn load(vb: &VarBuilder, adapters: Option<&Adapters>, weight: Weight) -> candle_core::Result<Option<Self>> {
        let Some(adapters) = adapters else {
            return Ok(None);
        };
        let (tasks, rank) = (adapters.tasks.len(), adapters.rank.size());
        let vb = vb.pp("parametrizations.weight.0");
        let scale = adapters.alpha / rank as f64;
        let (left, right) = match weight {
            // [tasks, rank, in] -> [in, tasks * rank]; [tasks, out, rank] -> [tasks * rank, out].
            Weight::Linear { input, output } => (
                vb.get((tasks, rank, input), "lora_A")?
                    .reshape((tasks * rank, input))?
                    .t()?,
                vb.get((tasks, output, rank), "lora_B")?
                    .transpose(1, 2)?
                    .reshape((tasks * rank, output))?,
            ),
            // [tasks, rows, rank] -> [rows, tasks * rank]; [tasks, rank, width] -> [tasks * rank, width].
            Weight::Embedding { rows, width } => (
                vb.get((tasks, rows, rank), "lora_A")?
                    .transpose(0, 1)?
                    .reshape((rows, tasks * rank))?,
                vb.get((tasks, rank, width), "lora_B")?.reshape((tasks * rank, width))?,
            ),
        };
        Self::new(left, (right * scale)?, rank).map(Some)
    }

    fn new(left: Tensor, right: Tensor, rank: usize) -> candle_core::Result<Self> {
        let tasks = right.dim(0)? / rank;
        let each = (0..tasks)
            .map(|t| {
                Ok((
                    left.narrow(1, t * rank, rank)?.contiguous()?,
                    right.narrow(0, t * rank, rank)?.contiguous()?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            left: left.contiguous()?,
            right: right.contiguous()?,
            each,
        })
    }

    /// `y` plus each row's term; `project(left)` gives the rows' projections onto `left`.
    fn add_terms(
        &self,
        y: Tensor,
        tasks: &TaskRows,
        project: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        match tasks {
            TaskRows::None => Ok(y),
            TaskRows::One(t) => {
                let (left, right) = &self.each[*t];
                y + project(left)?.matmul(right)?
            }
            TaskRows::Mask(mask) => {
                let projected = project(&self.left)?;
                y + projected.mul(&mask.to_dtype(projected.dtype())?)?.matmul(&self.right)?
            }
        }
    }

    /// A linear's output `y` for input `x` (`[total, in]`) with the terms added.
    fn adapt_output(&self, y: Tensor, x: &Tensor, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        self.add_terms(y, tasks, |left| x.matmul(left))
    }

    /// Looked-up rows `y` of the token ids `ids` (a `[total]` u32 tensor) with the terms added.
    pub(crate) fn adapt_rows(&self, y: Tensor, ids: &Tensor, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        self.add_terms(y, tasks, |left| left.index_select(ids, 0))
    }
}

/// A linear layer and its task adapters, if any.
#[derive(Debug)]
pub(crate) struct Projection {
    pub(crate) linear: Linear,
    pub(crate) lora: Option<Lora>,
}

impl Projection {
    fn adapted(&self, y: Tensor, x: &Tensor, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        match &self.lora {
            Some(lora) => lora.adapt_output(y, x, tasks),
            None => Ok(y),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, tasks: &TaskRows) -> candle_core::Result<Tensor> {
        self.adapted(self.linear.forward(x)?, x, tasks)
    }

    pub(crate) fn forward_residual(
        &self,
        x: &Tensor,
        residual: &Tensor,
        tasks: &TaskRows,
    ) -> candle_core::Result<Tensor> {
        self.adapted(self.linear.forward_residual(x, residual)?, x, tasks)
    }

    /// `act(x W^T + b)`: fused into the product without tasks; with them, after the terms.
    pub(crate) fn forward_activated(
        &self,
        x: &Tensor,
        act: HiddenAct,
        tasks: &TaskRows,
    ) -> candle_core::Result<Tensor> {
        match self.lora.is_some() && !matches!(tasks, TaskRows::None) {
            true => act.apply(&self.forward(x, tasks)?),
            false => self.linear.forward_activated(x, act),
        }
    }
}
