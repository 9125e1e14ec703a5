// Mamba-3 scan on tensor cores: maps the trapezoid recurrence (§3.5: σ_t = γ_t + Δ_{t+1}(1 − λ_{t+1})
// off the diagonal, γ_t on it, the pending β term of (k_prev, v_prev) on entry) onto the chunked-scan
// engine of ops/ssd/ssd_fast.cu, then saves the last token's keys and value as the next call's state.
// MIMO runs the engine over (token, rank) rows (ChunkedScanParams::rank).
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/mamba3_scan/mamba3_scan_fast.cuh"
#include "ops/ssd/ssd_fast.cuh"

namespace mamba::ops::cuda {

namespace {

constexpr int kTile = 64;            // the engine's intra-chunk tile (rows)
constexpr int kStateChunk = 256;     // tokens between stored states (4 SISO tiles, 4·R MIMO tiles) ...
constexpr int64_t kFullGrid = 1024;  // ... halved down to 4 tiles while the grid has fewer blocks

// Tokens per stored state: 256 as SISO, so a MIMO call stores no more states than a SISO one; for
// short inputs fewer (down to 4 tiles) so that the (batch, head, chunk) grid still fills the GPU.
int state_chunk_of(const Mamba3ScanFastParams& m) {
  if (m.state_chunk > 0) return m.state_chunk;
  const int rank = std::max(m.mimo_rank, 1), min_chunk = 4 * kTile / rank;
  int chunk = kStateChunk;
  auto blocks = [&](int c) { return int64_t(m.batch) * m.n_heads * ((int64_t(m.seq_len) + c - 1) / c); };
  while (chunk / 2 >= min_chunk && blocks(chunk) < kFullGrid) chunk /= 2;
  return chunk;
}

// k_prev[r] ← k_{T−1, r}, v_prev ← x_{T−1} as f32 (§3.5: rotated, biased, unscaled keys; raw x).
// Grid (batch, head, rank).
__global__ void save_last_token_kernel(const Mamba3ScanFastParams p) {
  const int b = blockIdx.x, h = blockIdx.y, r = blockIdx.z, i = threadIdx.x;
  const int64_t last = p.seq_len - 1;
  if (i < p.d_state && p.k_prev_out) {
    const __nv_bfloat16* k =
        p.k + b * p.k_batch_stride + last * p.k_seq_stride + r * p.k_rank_stride + h * p.k_head_stride;
    p.k_prev_out[b * p.k_prev_batch_stride + r * p.k_prev_rank_stride + h * p.k_prev_head_stride + i] =
        __bfloat162float(k[i]);
  }
  if (r == 0 && i < p.head_dim && p.v_prev_out) {
    const __nv_bfloat16* x = p.x + b * p.x_batch_stride + last * p.x_seq_stride + h * p.x_head_stride;
    p.v_prev_out[b * p.v_prev_batch_stride + h * p.v_prev_head_stride + i] = __bfloat162float(x[i]);
  }
}

ChunkedScanParams engine_params(const Mamba3ScanFastParams& m) {
  ChunkedScanParams p;
  p.batch = m.batch, p.seq_len = m.seq_len, p.n_heads = m.n_heads, p.head_dim = m.head_dim;
  p.d_state = m.d_state, p.heads_per_group = 1, p.rank = m.mimo_rank, p.state_chunk = state_chunk_of(m);
  p.weights = ScanWeights::trapezoid;
  p.x = m.x, p.x_batch_stride = m.x_batch_stride, p.x_seq_stride = m.x_seq_stride,
  p.x_head_stride = m.x_head_stride;
  p.q = m.q, p.q_batch_stride = m.q_batch_stride, p.q_seq_stride = m.q_seq_stride,
  p.q_group_stride = m.q_head_stride, p.q_rank_stride = m.q_rank_stride;
  p.k = m.k, p.k_batch_stride = m.k_batch_stride, p.k_seq_stride = m.k_seq_stride,
  p.k_group_stride = m.k_head_stride, p.k_rank_stride = m.k_rank_stride;
  p.mimo_x = m.mimo_x, p.mimo_x_head_stride = m.mimo_x_head_stride,
  p.mimo_x_rank_stride = m.mimo_x_rank_stride;
  p.dt = m.dt, p.adt = m.adt, p.trap = m.trap;
  p.dt_batch_stride = m.dt_batch_stride, p.dt_seq_stride = m.dt_seq_stride,
  p.dt_head_stride = m.dt_head_stride;
  p.D = m.D;
  p.initial_state = m.ssm_in, p.initial_state_batch_stride = m.ssm_batch_stride;
  p.initial_state_head_stride = m.ssm_head_stride;
  p.final_state = m.ssm_out, p.final_state_batch_stride = m.ssm_batch_stride;
  p.final_state_head_stride = m.ssm_head_stride;
  p.k_prev = m.k_prev_in, p.k_prev_batch_stride = m.k_prev_batch_stride,
  p.k_prev_head_stride = m.k_prev_head_stride, p.k_prev_rank_stride = m.k_prev_rank_stride;
  p.v_prev = m.v_prev_in, p.v_prev_batch_stride = m.v_prev_batch_stride,
  p.v_prev_head_stride = m.v_prev_head_stride;
  p.y = m.y, p.y_batch_stride = m.y_batch_stride, p.y_seq_stride = m.y_seq_stride,
  p.y_head_stride = m.y_head_stride, p.y_rank_stride = m.y_rank_stride;
  p.workspace = m.workspace;
  return p;
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

void check_vec_rows(const void* ptr, std::initializer_list<int64_t> strides, const char* name) {
  if (!ptr) throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: ", name, " is null");
  bool ok = aligned16(ptr);
  for (int64_t s : strides) ok = ok && s % 8 == 0;
  if (!ok) {
    throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: ", name,
                " rows must be 16-byte aligned (strides multiples of 8)");
  }
}

}  // namespace

size_t mamba3_scan_fast_workspace_bytes(const Mamba3ScanFastParams& m) {
  return chunked_scan_workspace_bytes(engine_params(m));
}

void mamba3_scan_fast_fwd(const Mamba3ScanFastParams& m, cudaStream_t stream) {
  if (m.batch < 0 || m.seq_len < 0 || m.n_heads <= 0) {
    throw_error(ErrorCode::shape, "mamba3_scan_fast_fwd: batch ", m.batch, ", seq_len ", m.seq_len,
                ", n_heads ", m.n_heads);
  }
  check_chunked_scan_dims(m.head_dim, m.d_state, "mamba3_scan_fast_fwd", m.mimo_rank);
  if (m.chunk_size != kTile / m.mimo_rank) {
    throw_error(ErrorCode::unsupported, "mamba3_scan_fast_fwd: chunk_size ", m.chunk_size, " at mimo_rank ",
                m.mimo_rank, ", compiled for ", kTile / m.mimo_rank, " tokens");
  }
  if (m.state_chunk < 0 || m.state_chunk % m.chunk_size != 0) {
    throw_error(ErrorCode::unsupported, "mamba3_scan_fast_fwd: state_chunk ", m.state_chunk,
                " (0, or a multiple of chunk_size ", m.chunk_size, ")");
  }
  if (m.batch == 0 || m.seq_len == 0) return;
  check_vec_rows(m.x, {m.x_batch_stride, m.x_seq_stride, m.x_head_stride}, "x");
  check_vec_rows(m.q, {m.q_batch_stride, m.q_seq_stride, m.q_head_stride, m.q_rank_stride}, "q");
  check_vec_rows(m.k, {m.k_batch_stride, m.k_seq_stride, m.k_head_stride, m.k_rank_stride}, "k");
  check_vec_rows(m.y, {m.y_batch_stride, m.y_seq_stride, m.y_head_stride, m.y_rank_stride}, "y");
  if (!m.adt || !m.dt || !m.trap)
    throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: adt, dt and trap are required");
  if ((m.mimo_rank > 1) != (m.mimo_x != nullptr)) {  // rank 1 reads x as is: a mimo_x there would be ignored
    throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: mimo_x goes with mimo_rank > 1 (rank ",
                m.mimo_rank, ")");
  }
  if (!m.k_prev_in != !m.v_prev_in) {
    throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: k_prev_in and v_prev_in go together");
  }
  const bool ssm_ok = aligned16(m.ssm_in) && aligned16(m.ssm_out) && m.ssm_batch_stride % 4 == 0 &&
                      m.ssm_head_stride % 4 == 0;
  if ((m.ssm_in || m.ssm_out) && !ssm_ok) {
    throw_error(ErrorCode::invalid_argument,
                "mamba3_scan_fast_fwd: ssm state must be 16-byte aligned (strides multiples of 4)");
  }
  const size_t need = mamba3_scan_fast_workspace_bytes(m);
  if (!m.workspace || !aligned16(m.workspace) || m.workspace_bytes < need) {
    throw_error(ErrorCode::invalid_argument, "mamba3_scan_fast_fwd: workspace of ", m.workspace_bytes,
                " bytes, need ", need, " (16-byte aligned)");
  }
  chunked_scan_fwd(engine_params(m), stream);
  if (m.k_prev_out || m.v_prev_out) {  // after the engine, which reads k_prev_in/v_prev_in (may alias)
    const int threads = (std::max(m.head_dim, m.d_state) + 31) / 32 * 32;
    save_last_token_kernel<<<dim3(m.batch, m.n_heads, m.mimo_rank), threads, 0, stream>>>(m);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace mamba::ops::cuda
