// The CUDA backend's one registration: every op's CUDA entry point (defined in ops/<op>/*.cu) is
// declared here and nowhere else, and put in the table the op fronts dispatch through
// (ops/kernels.h). Compiled only in a CUDA build (src/ops/CMakeLists.txt); adding a CUDA kernel to
// an op = its .cu file, its entry in kernels.h's struct for the op, and its line here. A
// declaration that does not match its definition fails to link.
#include <cstdint>
#include <vector>

#include "ops/kernels.h"

namespace mamba::ops {

// ---- The entry points, by op folder.

// attention
Tensor attention_fwd_cuda(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                          float scale);
void rotary_rotate_cuda(Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                        float sign);
void attention_bwd_cuda(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        Tensor& dq, Tensor& dk, Tensor& dv);

// causal_conv1d
Tensor causal_conv1d_fwd_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                              bool silu);
Tensor causal_conv1d_step_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                               bool silu);
Tensor causal_conv1d_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              bool silu, Tensor& dweight, Tensor& dbias);

// cross_entropy
double cross_entropy_fwd_cuda(const Tensor& logits, const Tensor& targets);
Tensor cross_entropy_bwd_cuda(const Tensor& logits, const Tensor& targets);
Tensor cross_entropy_train_cuda(const Tensor& logits, const Tensor& targets, Tensor& dlogits);
Tensor cross_entropy_train_device_cuda(const Tensor& logits, const Tensor& targets, const Tensor& counts,
                                       Tensor& dlogits);

// elementwise
void add_cuda_(Tensor& a, const Tensor& b);
void scale_cuda_(Tensor& x, float s);
Tensor swiglu_cuda(const Tensor& h, bool gate_first);
Tensor gated_act_cuda(const Tensor& h, GateAct act, bool gate_first);
Tensor activation_cuda(const Tensor& x, GateAct act);
void mul_silu_cuda_(Tensor& y, const Tensor& z);
Tensor softplus_bias_clamp_cuda(const Tensor& raw, const Tensor& bias, float lo, float hi);
Tensor concat_last_cuda(const Tensor& a, const Tensor& b);
Tensor embedding_cuda(const Tensor& ids, const Tensor& table);
Tensor neg_exp_cuda(const Tensor& x);
Tensor swiglu_bwd_cuda(const Tensor& dout, const Tensor& h, bool gate_first);
Tensor gated_act_bwd_cuda(const Tensor& dout, const Tensor& h, GateAct act, bool gate_first);
Tensor activation_bwd_cuda(const Tensor& dout, const Tensor& x, GateAct act);
void mul_silu_bwd_cuda(const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz);
Tensor softplus_bias_clamp_bwd_cuda(const Tensor& dout, const Tensor& raw, const Tensor& bias, float lo,
                                    float hi, Tensor& dbias);
void embedding_bwd_cuda(const Tensor& ids, const Tensor& dout, Tensor& dtable);
void neg_exp_bwd_cuda(const Tensor& dA, const Tensor& A, Tensor& dA_log);

// linear
Tensor linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_into_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias,
                      Tensor& y);
bool decode_gemv_applies_cuda(const KernelPlan& plan, int64_t rows, const Tensor& weight);
bool rms_norm_linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& norm_weight, float eps,
                          const Tensor& weight, Tensor& y);
bool linear_add_cuda_(const KernelPlan& plan, Tensor& residual, const Tensor& x, const Tensor& weight);
Tensor linear_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight,
                       Tensor& dbias);

// mamba3_gates
void mamba3_prepare_fwd_cuda(const Tensor& proj, const Mamba3Gates& g, Tensor& angle, Mamba3ScanArgs& args);
Tensor mamba3_combine_fwd_cuda(const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                               const Tensor& mimo_z, const Tensor& mimo_o);
void mamba3_prepare_bwd_cuda(const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& dscan,
                             Tensor& dproj, Mamba3Gates& grads);
Tensor mamba3_combine_bwd_cuda(const Tensor& dout, const Tensor& y, const Tensor& z,
                               const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o,
                               Tensor& dz, Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o);

// mamba3_scan
void mamba3_scan_cuda(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);
void mamba3_scan_wide_cuda(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);
Mamba3ScanGrads mamba3_scan_bwd_cuda_exact(const Mamba3ScanArgs& args, const Tensor& dy);
bool mamba3_scan_bwd_cuda_gemm_supported(const Mamba3ScanArgs& args);
Mamba3ScanGrads mamba3_scan_bwd_cuda_gemm(const Mamba3ScanArgs& args, const Tensor& dy);
bool mamba3_scan_bwd_fast_supported(const Mamba3ScanArgs& args);
Mamba3ScanGrads mamba3_scan_bwd_cuda_fast(const Mamba3ScanArgs& args, const Tensor& dy);

// mamba3_step
bool mamba3_step_cuda(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                      Tensor& angle, Mamba3ScanState& state, Tensor& o);

// moe
MoeRouting moe_route_cuda(const Tensor& logits, const MoeRouterParams& p);
Tensor moe_route_bwd_cuda(const Tensor& dweights, const Tensor& logits, const MoeRouting& r,
                          const MoeRouterParams& p);
std::vector<int64_t> moe_sort_cuda(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of);
void moe_gather_cuda(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out);
void moe_combine_cuda(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y);
void moe_dweights_cuda(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights);
void moe_act_cuda(const Tensor& h, MoeActivation act, Tensor& a);
void moe_act_bwd_cuda(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh);

// norm
Tensor layer_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor rms_norm_gated_cuda(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                           bool norm_before_gate, float eps);
Tensor add_norm_cuda_(Tensor& residual, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                      bool layer);
Tensor layer_norm_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                           Tensor& dweight, Tensor& dbias);
Tensor rms_norm_gated_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& z, const Tensor& weight,
                               int64_t group_size, bool norm_before_gate, float eps, Tensor& dweight,
                               Tensor& dz);
Tensor rms_norm_gated_per_block_cuda(const Tensor& x, const Tensor& z, const Tensor& weight,
                                     int64_t group_size, bool norm_before_gate, float eps);
Tensor rms_norm_gated_bwd_per_block_cuda(const Tensor& dy, const Tensor& x, const Tensor& z,
                                         const Tensor& weight, int64_t group_size, bool norm_before_gate,
                                         float eps, Tensor& dweight, Tensor& dz);

// optim
void adamw_update_cuda(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s,
                       const AdamWScalars* s_dev);
double sum_squares_cuda(const Tensor& t);
Tensor sum_squares_total_cuda(const std::vector<Tensor>& ts);
void clip_scale_cuda_(Tensor& t, const Tensor& total, double max_norm);
void scale_cuda_(Tensor& t, double coef);
void zero_cuda_(Tensor& t);

// selective_scan
Tensor selective_scan_fwd_cuda(const SelectiveScanArgs& args, Tensor& state);
SelectiveScanGrads selective_scan_bwd_cuda(const SelectiveScanArgs& args, const Tensor& dy);

// ssd
Tensor ssd_scan_cuda(const SsdArgs& args, Tensor& state);
SsdGrads ssd_bwd_cuda_exact(const SsdArgs& args, const Tensor& dy);
bool ssd_bwd_gemm_supported(const SsdArgs& args);
SsdGrads ssd_bwd_cuda_gemm(const SsdArgs& args, const Tensor& dy);
bool ssd_bwd_fast_supported(const SsdArgs& args);
SsdGrads ssd_bwd_cuda_fast(const SsdArgs& args, const Tensor& dy);

namespace {

const CudaKernels kTable{
    .attention = {.fwd = attention_fwd_cuda, .rotary_rotate = rotary_rotate_cuda, .bwd = attention_bwd_cuda},
    .causal_conv1d = {.fwd = causal_conv1d_fwd_cuda,
                      .step = causal_conv1d_step_cuda,
                      .bwd = causal_conv1d_bwd_cuda},
    .cross_entropy = {.fwd = cross_entropy_fwd_cuda,
                      .bwd = cross_entropy_bwd_cuda,
                      .train = cross_entropy_train_cuda,
                      .train_device = cross_entropy_train_device_cuda},
    .elementwise = {.add_ = add_cuda_,
                    .scale_ = scale_cuda_,
                    .swiglu = swiglu_cuda,
                    .gated_act = gated_act_cuda,
                    .activation = activation_cuda,
                    .mul_silu_ = mul_silu_cuda_,
                    .softplus_bias_clamp = softplus_bias_clamp_cuda,
                    .concat_last = concat_last_cuda,
                    .embedding = embedding_cuda,
                    .neg_exp = neg_exp_cuda,
                    .swiglu_bwd = swiglu_bwd_cuda,
                    .gated_act_bwd = gated_act_bwd_cuda,
                    .activation_bwd = activation_bwd_cuda,
                    .mul_silu_bwd = mul_silu_bwd_cuda,
                    .softplus_bias_clamp_bwd = softplus_bias_clamp_bwd_cuda,
                    .embedding_bwd = embedding_bwd_cuda,
                    .neg_exp_bwd = neg_exp_bwd_cuda},
    .linear = {.into = linear_into_cuda,
               .fwd = linear_cuda,
               .gemv_fits = decode_gemv_applies_cuda,
               .rms_norm_linear = rms_norm_linear_cuda,
               .linear_add_ = linear_add_cuda_,
               .bwd = linear_bwd_cuda},
    .mamba3_gates = {.prepare_fwd = mamba3_prepare_fwd_cuda,
                     .combine_fwd = mamba3_combine_fwd_cuda,
                     .prepare_bwd = mamba3_prepare_bwd_cuda,
                     .combine_bwd = mamba3_combine_bwd_cuda},
    .mamba3_scan = {.scan = mamba3_scan_cuda,
                    .scan_wide = mamba3_scan_wide_cuda,
                    .bwd_exact = mamba3_scan_bwd_cuda_exact,
                    .bwd_gemm_supported = mamba3_scan_bwd_cuda_gemm_supported,
                    .bwd_gemm = mamba3_scan_bwd_cuda_gemm,
                    .bwd_fast_supported = mamba3_scan_bwd_fast_supported,
                    .bwd_fast = mamba3_scan_bwd_cuda_fast},
    .mamba3_step = {.step = mamba3_step_cuda},
    .moe = {.route = moe_route_cuda,
            .route_bwd = moe_route_bwd_cuda,
            .sort = moe_sort_cuda,
            .gather = moe_gather_cuda,
            .combine = moe_combine_cuda,
            .dweights = moe_dweights_cuda,
            .act = moe_act_cuda,
            .act_bwd = moe_act_bwd_cuda},
    .norm = {.layer_norm = layer_norm_cuda,
             .rms_norm_gated = rms_norm_gated_cuda,
             .add_norm_ = add_norm_cuda_,
             .layer_norm_bwd = layer_norm_bwd_cuda,
             .rms_norm_gated_bwd = rms_norm_gated_bwd_cuda,
             .rms_norm_gated_per_block = rms_norm_gated_per_block_cuda,
             .rms_norm_gated_bwd_per_block = rms_norm_gated_bwd_per_block_cuda},
    .optim = {.adamw_update = adamw_update_cuda,
              .sum_squares = sum_squares_cuda,
              .sum_squares_total = sum_squares_total_cuda,
              .clip_scale_ = clip_scale_cuda_,
              .scale_ = scale_cuda_,
              .zero_ = zero_cuda_},
    .selective_scan = {.fwd = selective_scan_fwd_cuda, .bwd = selective_scan_bwd_cuda},
    .ssd = {.scan = ssd_scan_cuda,
            .bwd_exact = ssd_bwd_cuda_exact,
            .bwd_gemm_supported = ssd_bwd_gemm_supported,
            .bwd_gemm = ssd_bwd_cuda_gemm,
            .bwd_fast_supported = ssd_bwd_fast_supported,
            .bwd_fast = ssd_bwd_cuda_fast},
};

}  // namespace

const CudaKernels* cuda_kernel_table() {
  return &kTable;
}

}  // namespace mamba::ops
