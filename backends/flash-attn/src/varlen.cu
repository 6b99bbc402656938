// tessera's entry point into flash attention: the forward pass over sequences packed end to end
// (varlen), for the kernels build.rs compiled (listed in the generated tessera_kernels.h). It fills the
// kernels' parameter block the way flash-attention's own varlen forward does for this case: no
// dropout, no KV cache, no split-KV, an unpadded log-sum-exp, optional ALiBi slopes, and either
// full (bidirectional) or causal attention.

#include <cmath>
#include <cstring>

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include "flash.h"

namespace {

int round_up(int x, int m) { return (x + m - 1) / m * m; }

}  // namespace

// Returns 0 on success, 1 when no compiled kernel covers (dtype, head_dim, causal), 2 when the
// launch failed (cudaGetLastError).
extern "C" int tessera_flash_attn_varlen(
    const void *q, const void *k, const void *v, void *out, float *softmax_lse,
    const float *alibi_slopes, const int *cu_seqlens, int batch, int heads, int kv_heads,
    int head_dim, int max_seqlen, int total_tokens, float softmax_scale, int is_bf16,
    int is_causal, void *stream) {
    Flash_fwd_params params;
    std::memset(&params, 0, sizeof(params));

    // q, k, v and out are [tokens, heads, head_dim], contiguous; strides are in elements. The
    // batch strides stay 0: sequences are found through cu_seqlens.
    params.q_ptr = const_cast<void *>(q);
    params.k_ptr = const_cast<void *>(k);
    params.v_ptr = const_cast<void *>(v);
    params.o_ptr = out;
    params.q_row_stride = static_cast<int64_t>(heads) * head_dim;
    params.k_row_stride = static_cast<int64_t>(kv_heads) * head_dim;
    params.v_row_stride = static_cast<int64_t>(kv_heads) * head_dim;
    params.o_row_stride = static_cast<int64_t>(heads) * head_dim;
    params.q_head_stride = head_dim;
    params.k_head_stride = head_dim;
    params.v_head_stride = head_dim;
    params.o_head_stride = head_dim;

    params.b = batch;
    params.h = heads;
    params.h_k = kv_heads;
    params.h_h_k_ratio = heads / kv_heads;
    params.seqlen_q = max_seqlen;
    params.seqlen_k = max_seqlen;
    params.seqlen_q_rounded = round_up(max_seqlen, 128);
    params.seqlen_k_rounded = round_up(max_seqlen, 128);
    params.total_q = total_tokens;
    params.d = head_dim;
    params.d_rounded = round_up(head_dim, 32);

    params.cu_seqlens_q = const_cast<int *>(cu_seqlens);
    params.cu_seqlens_k = const_cast<int *>(cu_seqlens);
    params.is_seqlens_k_cumulative = true;
    params.softmax_lse_ptr = softmax_lse;
    params.unpadded_lse = true;

    params.scale_softmax = softmax_scale;
    params.scale_softmax_log2 = softmax_scale * static_cast<float>(M_LOG2E);
    params.softcap = 0.0f;
    // Dropout off: every activation kept.
    params.p_dropout = 1.0f;
    params.p_dropout_in_uint8_t = 255;
    params.rp_dropout = 1.0f;
    params.scale_softmax_rp_dropout = softmax_scale;

    params.alibi_slopes_ptr = const_cast<float *>(alibi_slopes);
    params.alibi_slopes_batch_stride = 0;

    params.is_bf16 = is_bf16 != 0;
    params.is_causal = is_causal != 0;
    // The kernels' window convention: causal is a window of (everything before, nothing after);
    // full attention is no window at all (-1, -1).
    params.window_size_left = is_causal ? max_seqlen : -1;
    params.window_size_right = is_causal ? 0 : -1;
    params.num_splits = 1;

    cudaStream_t launch_on = static_cast<cudaStream_t>(stream);
    bool launched = false;
    // The smallest compiled head dimension that holds head_dim (the kernels mask the rest).
#define TESSERA_KERNEL(T, BF16, D, CAUSAL)                                                   \
    if (!launched && params.is_bf16 == BF16 && params.is_causal == CAUSAL && head_dim <= D) { \
        run_mha_fwd_<T, D, CAUSAL>(params, launch_on);                                       \
        launched = true;                                                                     \
    }
#include "tessera_kernels.h"
#undef TESSERA_KERNEL
    if (!launched) {
        return 1;
    }
    return cudaGetLastError() == cudaSuccess ? 0 : 2;
}
