//! Task adapters (LoRA) applied at run time: a weight `W` with adapters serves task `t` as
//! `W + scale * B_t A_t` without that sum ever being formed. Each sequence of a batch names its
//! task (or none); the base projection runs once over the whole batch and each run of sequences
//! with a task adds its low-rank term, `scale * (x A_t^T) B_t^T`: `2 * rank * (in + out)`
//! multiply-adds per token against the base's `in * out`. Merging the adapters into the weights
//! instead would cost a copy of every adapted weight per task (five for jina-embeddings-v3)
//! and fix each copy to one task, where a batch mixes them.
//!
//! Reference: jina-embeddings-v3's `modeling_lora.py` (`LoRAParametrization.lora_forward`).

use std::ops::Range;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::layers::{lookup, Linear};
use tessera_core::HiddenAct;

use crate::spec::Adapters;

/// Each run of consecutive sequences with the same task: its token rows and the task
/// ([`tessera_core::Batch::task_runs`]).
pub(crate) type TaskRuns = [(Range<usize>, Option<usize>)];

/// One weight's adapters, per task: the left factor (`A_t^T`, `[in, rank]`, for a linear; `A_t`,
/// `[rows, rank]`, looked up by id, for an embedding) and the right one (`B_t^T` `[rank, out]`,
/// `B_t` `[rank, width]`), scaled by `alpha / rank`.
#[derive(Debug)]
pub(crate) struct Lora {
    left: Vec<Tensor>,
    right: Vec<Tensor>,
    out: usize,
}

impl Lora {
    /// The adapters of the linear module at `vb` (`input` -> `output`), if the spec has them.
    pub(crate) fn linear(
        vb: &VarBuilder,
        adapters: Option<&Adapters>,
        input: usize,
        output: usize,
    ) -> candle_core::Result<Option<Self>> {
        let Some(adapters) = adapters else {
            return Ok(None);
        };
        let (tasks, rank) = (adapters.tasks.len(), adapters.rank.size());
        let (a, b) = Self::factors(vb, (tasks, rank, input), (tasks, output, rank))?;
        let scale = adapters.alpha / rank as f64;
        Ok(Some(Self {
            left: (0..tasks)
                .map(|t| a.get(t)?.t()?.contiguous())
                .collect::<candle_core::Result<_>>()?,
            right: (0..tasks)
                .map(|t| (b.get(t)?.t()? * scale)?.contiguous())
                .collect::<candle_core::Result<_>>()?,
            out: output,
        }))
    }

    /// The adapters of the embedding table at `vb` (`rows` x `width`), if the spec has them.
    pub(crate) fn embedding(
        vb: &VarBuilder,
        adapters: Option<&Adapters>,
        rows: usize,
        width: usize,
    ) -> candle_core::Result<Option<Self>> {
        let Some(adapters) = adapters else {
            return Ok(None);
        };
        let (tasks, rank) = (adapters.tasks.len(), adapters.rank.size());
        let (a, b) = Self::factors(vb, (tasks, rows, rank), (tasks, rank, width))?;
        let scale = adapters.alpha / rank as f64;
        Ok(Some(Self {
            left: (0..tasks).map(|t| a.get(t)).collect::<candle_core::Result<_>>()?,
            right: (0..tasks)
                .map(|t| b.get(t)? * scale)
                .collect::<candle_core::Result<_>>()?,
            out: width,
        }))
    }

    fn factors(
        vb: &VarBuilder,
        a: (usize, usize, usize),
        b: (usize, usize, usize),
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let vb = vb.pp("parametrizations.weight.0");
        Ok((vb.get(a, "lora_A")?, vb.get(b, "lora_B")?))
    }

    /// The low-rank terms for `runs`, one row per row of the batch (zero rows where a run has no
    /// task), from `left` applied to each run's rows; `None` when no run has a task.
    fn terms(
        &self,
        runs: &TaskRuns,
        like: &Tensor,
        left: impl Fn(&Range<usize>, usize) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Option<Tensor>> {
        if runs.iter().all(|(_, task)| task.is_none()) {
            return Ok(None);
        }
        let parts = runs
            .iter()
            .map(|(rows, task)| match *task {
                Some(t) => left(rows, t)?.matmul(&self.right[t]),
                None => Tensor::zeros((rows.len(), self.out), like.dtype(), like.device()),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0).map(Some)
    }

    /// A linear's terms for input `x` (`[total, in]`).
    fn of_input(&self, x: &Tensor, runs: &TaskRuns) -> candle_core::Result<Option<Tensor>> {
        self.terms(runs, x, |rows, t| {
            x.narrow(0, rows.start, rows.len())?.matmul(&self.left[t])
        })
    }

    /// An embedding's terms for the token ids `ids`.
    pub(crate) fn of_ids(&self, ids: &[u32], like: &Tensor, runs: &TaskRuns) -> candle_core::Result<Option<Tensor>> {
        self.terms(runs, like, |rows, t| lookup(&self.left[t], &ids[rows.clone()]))
    }
}

/// A linear layer and its task adapters, if any.
#[derive(Debug)]
pub(crate) struct Projection {
    pub(crate) linear: Linear,
    pub(crate) lora: Option<Lora>,
}

impl Projection {
    /// `y + terms`, or `y` without adapters or tasks.
    fn adapted(&self, y: Tensor, x: &Tensor, runs: &TaskRuns) -> candle_core::Result<Tensor> {
        match self.lora.as_ref().map(|l| l.of_input(x, runs)).transpose()?.flatten() {
            Some(terms) => y + terms,
            None => Ok(y),
        }
    }

    fn has_tasks(&self, runs: &TaskRuns) -> bool {
        self.lora.is_some() && runs.iter().any(|(_, t)| t.is_some())
    }

    pub(crate) fn forward(&self, x: &Tensor, runs: &TaskRuns) -> candle_core::Result<Tensor> {
        self.adapted(self.linear.forward(x)?, x, runs)
    }

    pub(crate) fn forward_residual(
        &self,
        x: &Tensor,
        residual: &Tensor,
        runs: &TaskRuns,
    ) -> candle_core::Result<Tensor> {
        self.adapted(self.linear.forward_residual(x, residual)?, x, runs)
    }

    /// `act(x W^T + b)`: fused into the product without tasks; with them, after the terms.
    pub(crate) fn forward_activated(&self, x: &Tensor, act: HiddenAct, runs: &TaskRuns) -> candle_core::Result<Tensor> {
        match self.has_tasks(runs) {
            true => act.apply(&self.forward(x, runs)?),
            false => self.linear.forward_activated(x, act),
        }
    }
}
