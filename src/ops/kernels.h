// The device kernels the op fronts dispatch to: one table, one struct of entry points per op,
// filled in one place by the CUDA backend (ops/cuda_kernels.cpp, compiled only in a CUDA build;
// ops/no_device_kernels.cpp otherwise). This is the only declaration of the CUDA entry points:
// an op's front (<op>.cpp) checks, chooses the kernel from its arguments and exec.plan(), and calls
// `cuda_kernels().<op>.<kernel>(...)`; no front holds preprocessor code.
//
// Each entry keeps the contract of the front function it serves (ops/<op>/<op>.h) unless its
// comment says otherwise; `*_supported` / `*_fits` entries are the kernels' own shape conditions,
// asked only by the front that chooses between them.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/attention/attention.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/elementwise/elementwise.h"
#include "ops/exec.h"
#include "ops/linear/linear.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_step/mamba3_step.h"
#include "ops/moe/moe.h"
#include "ops/norm/norm.h"
#include "ops/optim/optim.h"
#include "ops/selective_scan/selective_scan.h"
#include "ops/ssd/ssd.h"

namespace mamba::ops {

struct CudaKernels {
  struct Attention {  // attention_cuda.cu, attention_bwd_cuda.cu
    Tensor (*fwd)(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos, float scale);
    void (*rotary_rotate)(Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                          float sign);
    void (*bwd)(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                Tensor& dq, Tensor& dk, Tensor& dv);
  } attention;

  struct CausalConv1d {  // causal_conv1d_cuda.cu, causal_conv1d_bwd_cuda.cu
    Tensor (*fwd)(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state, bool silu);
    Tensor (*step)(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state, bool silu);
    Tensor (*bwd)(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu,
                  Tensor& dweight, Tensor& dbias);
  } causal_conv1d;

  struct CrossEntropy {  // cross_entropy_cuda.cu
    double (*fwd)(const Tensor& logits, const Tensor& targets);
    Tensor (*bwd)(const Tensor& logits, const Tensor& targets);
    Tensor (*train)(const Tensor& logits, const Tensor& targets, Tensor& dlogits);
    Tensor (*train_device)(const Tensor& logits, const Tensor& targets, const Tensor& counts,
                           Tensor& dlogits);
  } cross_entropy;

  struct Elementwise {  // elementwise_cuda.cu, elementwise_bwd_cuda.cu
    void (*add_)(Tensor& a, const Tensor& b);
    void (*scale_)(Tensor& x, float s);
    Tensor (*swiglu)(const Tensor& h, bool gate_first);
    Tensor (*gated_act)(const Tensor& h, GateAct act, bool gate_first);
    Tensor (*activation)(const Tensor& x, GateAct act);
    void (*mul_silu_)(Tensor& y, const Tensor& z);
    Tensor (*softplus_bias_clamp)(const Tensor& raw, const Tensor& bias, float lo, float hi);
    Tensor (*concat_last)(const Tensor& a, const Tensor& b);
    Tensor (*embedding)(const Tensor& ids, const Tensor& table);
    Tensor (*neg_exp)(const Tensor& x);
    Tensor (*swiglu_bwd)(const Tensor& dout, const Tensor& h, bool gate_first);
    Tensor (*gated_act_bwd)(const Tensor& dout, const Tensor& h, GateAct act, bool gate_first);
    Tensor (*activation_bwd)(const Tensor& dout, const Tensor& x, GateAct act);
    void (*mul_silu_bwd)(const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz);
    Tensor (*softplus_bias_clamp_bwd)(const Tensor& dout, const Tensor& raw, const Tensor& bias, float lo,
                                      float hi, Tensor& dbias);
    void (*embedding_bwd)(const Tensor& ids, const Tensor& dout, Tensor& dtable);
    void (*neg_exp_bwd)(const Tensor& dA, const Tensor& A, Tensor& dA_log);
  } elementwise;

  struct Linear {  // linear_cuda.cu, linear_bwd_cuda.cu
    void (*into)(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias,
                 Tensor& y);
    Tensor (*fwd)(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias);
    // The decode GEMV's weight conditions for `rows` rows (bf16 [out, in], in % 8 == 0, 1-4 rows,
    // the normed rows fitting shared memory; false with the plan's decode_gemv = cublas).
    bool (*gemv_fits)(const KernelPlan& plan, int64_t rows, const Tensor& weight);
    // The fused kernels: false (nothing done) where the GEMV does not take these operands.
    bool (*rms_norm_linear)(const KernelPlan& plan, const Tensor& x, const Tensor& norm_weight, float eps,
                            const Tensor& weight, Tensor& y);
    bool (*linear_add_)(const KernelPlan& plan, Tensor& residual, const Tensor& x, const Tensor& weight);
    Tensor (*bwd)(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight, Tensor& dbias);
  } linear;

  struct Mamba3GatesOp {  // mamba3_gates_cuda.cu, mamba3_gates_bwd_cuda.cu
    void (*prepare_fwd)(const Tensor& proj, const Mamba3Gates& g, Tensor& angle, Mamba3ScanArgs& args);
    Tensor (*combine_fwd)(const Tensor& y, const Tensor& z, const Tensor& norm_weight, const Tensor& mimo_z,
                          const Tensor& mimo_o);
    void (*prepare_bwd)(const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& dscan, Tensor& dproj,
                        Mamba3Gates& grads);
    Tensor (*combine_bwd)(const Tensor& dout, const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                          const Tensor& mimo_z, const Tensor& mimo_o, Tensor& dz, Tensor& dnorm_weight,
                          Tensor& dmimo_z, Tensor& dmimo_o);
  } mamba3_gates;

  struct Mamba3Scan {  // mamba3_scan_cuda.cu, mamba3_scan_bwd_cuda.cu, mamba3_scan_bwd_gemm.cu, _bwd_fast.cu
    // One call for fwd, ref and step: the tensor-core scan where fast_bf16 and the shapes allow
    // (mamba3_scan_fast_bf16_applies), else the simple scan.
    void (*scan)(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);
    // The simple scan in its widest layout (2 head_dim rows × 256 state entries per warp) whatever
    // d_state: tests compare the narrower layouts `scan` takes for small d_state to it.
    void (*scan_wide)(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);
    // The chunk-parallel exact backward (fp32, every shape, MIMO included).
    Mamba3ScanGrads (*bwd_exact)(const Mamba3ScanArgs& args, const Tensor& dy);
    // The chunked matrix (GEMM) form and the shapes it takes (SISO).
    bool (*bwd_gemm_supported)(const Mamba3ScanArgs& args);
    Mamba3ScanGrads (*bwd_gemm)(const Mamba3ScanArgs& args, const Tensor& dy);
    // The fused tensor-core backward (bf16 operands, fp32 accumulation) and the shapes it takes
    // (SISO, head_dim 64, d_state 128, contiguous fp32 inputs).
    bool (*bwd_fast_supported)(const Mamba3ScanArgs& args);
    Mamba3ScanGrads (*bwd_fast)(const Mamba3ScanArgs& args, const Tensor& dy);
  } mamba3_scan;

  struct Mamba3Step {  // mamba3_step_cuda.cu (+ mamba3_step_stream_cuda.cu, which it chooses by plan)
    // The fused step; false (nothing done) where its shapes do not fit (the front composes the ops).
    bool (*step)(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                 Tensor& angle, Mamba3ScanState& state, Tensor& o);
  } mamba3_step;

  struct Moe {  // moe_cuda.cu: the small steps around moe.cpp's per-expert GEMMs (i32 indices)
    MoeRouting (*route)(const Tensor& logits, const MoeRouterParams& p);
    Tensor (*route_bwd)(const Tensor& dweights, const Tensor& logits, const MoeRouting& r,
                        const MoeRouterParams& p);
    // Stable counting sort of the slots by expert: rows per expert (host), rows_of, pos_of.
    std::vector<int64_t> (*sort)(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of);
    void (*gather)(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out);
    void (*combine)(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y);
    void (*dweights)(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights);
    void (*act)(const Tensor& h, MoeActivation act, Tensor& a);
    void (*act_bwd)(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh);
  } moe;

  struct Norm {  // norm_cuda.cu, norm_bwd_cuda.cu
    Tensor (*layer_norm)(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
    Tensor (*rms_norm_gated)(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                             bool norm_before_gate, float eps);
    // add_rms_norm_ (layer = false) / add_layer_norm_ (layer = true): one kernel per call.
    Tensor (*add_norm_)(Tensor& residual, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        float eps, bool layer);
    Tensor (*layer_norm_bwd)(const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                             Tensor& dweight, Tensor& dbias);
    Tensor (*rms_norm_gated_bwd)(const Tensor& dy, const Tensor& x, const Tensor& z, const Tensor& weight,
                                 int64_t group_size, bool norm_before_gate, float eps, Tensor& dweight,
                                 Tensor& dz);
    // The one-block-per-group kernels whatever the group size (the two above take a warp per group
    // of at most 256 channels, to the same bits): tests compare them.
    Tensor (*rms_norm_gated_per_block)(const Tensor& x, const Tensor& z, const Tensor& weight,
                                       int64_t group_size, bool norm_before_gate, float eps);
    Tensor (*rms_norm_gated_bwd_per_block)(const Tensor& dy, const Tensor& x, const Tensor& z,
                                           const Tensor& weight, int64_t group_size, bool norm_before_gate,
                                           float eps, Tensor& dweight, Tensor& dz);
  } norm;

  struct Optim {  // optim_cuda.cu
    // s_dev (device memory, may be null) replaces s when given.
    void (*adamw_update)(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s,
                         const AdamWScalars* s_dev);
    double (*sum_squares)(const Tensor& t);
    Tensor (*sum_squares_total)(const std::vector<Tensor>& ts);
    void (*clip_scale_)(Tensor& t, const Tensor& total, double max_norm);
    void (*scale_)(Tensor& t, double coef);
    void (*zero_)(Tensor& t);
  } optim;

  struct SelectiveScan {  // selective_scan_cuda.cu, selective_scan_bwd_cuda.cu
    Tensor (*fwd)(const SelectiveScanArgs& args, Tensor& state);
    SelectiveScanGrads (*bwd)(const SelectiveScanArgs& args, const Tensor& dy);
  } selective_scan;

  struct Ssd {  // ssd_cuda.cu (+ ssd_step.cu, ssd_fast.cu), ssd_bwd_cuda.cu, ssd_bwd_gemm.cu, ssd_bwd_fast.cu
    // One call for fwd and ref: the one-token step, the tensor-core chunked scan (fast_bf16 at its
    // shapes) or the simple scan, by shape.
    Tensor (*scan)(const SsdArgs& args, Tensor& state);
    // The chunk-parallel exact backward (fp32, every shape).
    SsdGrads (*bwd_exact)(const SsdArgs& args, const Tensor& dy);
    // The chunked matrix (GEMM) form and the shapes it takes (head_dim <= 256).
    bool (*bwd_gemm_supported)(const SsdArgs& args);
    SsdGrads (*bwd_gemm)(const SsdArgs& args, const Tensor& dy);
    // The fused tensor-core backward (bf16 operands, fp32 accumulation) and the shapes it takes
    // (head_dim 64, d_state 128, contiguous fp32 inputs).
    bool (*bwd_fast_supported)(const SsdArgs& args);
    SsdGrads (*bwd_fast)(const SsdArgs& args, const Tensor& dy);
  } ssd;
};

// Whether a CUDA Mamba-3 scan with fast_bf16 runs the tensor-core kernel (mamba3_scan_fast.cu) at
// these sizes: a sequence (seq_len > 1), head_dim 64, d_state 128, SISO (rank 1 without mimo_x) or
// MIMO rank 2 or 4. Where it does not, bf16 operands only cost a rounding and a widening. Asked by
// the scan's launcher and by mamba3_prepare_fwd's front (bf16_operands).
inline bool mamba3_scan_fast_bf16_applies(int64_t seq_len, int64_t rank, bool has_mimo_x, int64_t head_dim,
                                          int64_t d_state) {
  const bool siso = !has_mimo_x && rank == 1, mimo = has_mimo_x && (rank == 2 || rank == 4);
  return (siso || mimo) && seq_len > 1 && head_dim == 64 && d_state == 128;
}

// The CUDA backend's table; throws Error(unsupported) in a build without it (a CUDA tensor cannot
// exist there, so a front reaches this only from a CUDA tensor in a CUDA build).
const CudaKernels& cuda_kernels();

// The table itself, or null without a CUDA backend: defined by ops/cuda_kernels.cpp in a CUDA
// build and by ops/no_device_kernels.cpp otherwise (src/ops/CMakeLists.txt chooses the file).
const CudaKernels* cuda_kernel_table();

}  // namespace mamba::ops
