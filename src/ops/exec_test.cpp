// ops::KernelPlan: every field set from its "name=value" form and written back by to_json and
// describe; bad names and values rejected with a message naming the key and the expected values;
// an Exec on the CPU (no backend work, profiling stays off without a CUDA device).
#include "ops/exec.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "ops/device.h"

namespace mamba::ops {
namespace {

TEST(KernelPlan, DefaultsAreAutomatic) {
  const KernelPlan p;
  EXPECT_EQ(p.describe(), "default");
  EXPECT_EQ(p.to_json(),
            "{\"ssd_bwd\":\"auto\",\"mamba3_bwd\":\"auto\",\"decode_gemv\":\"auto\",\"gemv_split\":\"auto\","
            "\"mamba3_step\":\"auto\",\"dependent_launch\":\"on\",\"fuse_decode\":\"on\"}");
}

TEST(KernelPlan, SetsEveryField) {
  KernelPlan p;
  p.set("ssd_bwd=exact");
  p.set("mamba3_bwd=gemm");
  p.set("decode_gemv=cublas");
  p.set("gemv_split=21");
  p.set("mamba3_step=stream");
  p.set("dependent_launch=off");
  p.set("fuse_decode=off");
  EXPECT_EQ(p.ssd_bwd, KernelPlan::SsdBwd::exact);
  EXPECT_EQ(p.mamba3_bwd, KernelPlan::Mamba3Bwd::gemm);
  EXPECT_EQ(p.decode_gemv, KernelPlan::DecodeGemv::cublas);
  EXPECT_EQ(p.gemv_split, KernelPlan::GemvSplit::s21);
  EXPECT_EQ(p.mamba3_step, KernelPlan::Mamba3Step::stream);
  EXPECT_FALSE(p.dependent_launch);
  EXPECT_FALSE(p.fuse_decode);
  EXPECT_EQ(p.describe(),
            "ssd_bwd=exact mamba3_bwd=gemm decode_gemv=cublas gemv_split=21 mamba3_step=stream "
            "dependent_launch=off fuse_decode=off");
  EXPECT_NE(p.to_json().find("\"gemv_split\":\"21\""), std::string::npos);
  p.set("ssd_bwd=auto");  // back to the default: no longer described
  EXPECT_EQ(p.describe().find("ssd_bwd"), std::string::npos);
}

TEST(KernelPlan, RejectsBadAssignments) {
  KernelPlan p;
  auto message = [&](const std::string& a) {
    try {
      p.set(a);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << a;
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("ssd_bwd=fastest").find("expected auto|gemm|exact|fast, found 'fastest'"),
            std::string::npos);
  EXPECT_NE(message("ssd_bwd").find("expected name=value"), std::string::npos);
  EXPECT_NE(message("turbo=on").find("unknown kernel choice 'turbo'"), std::string::npos);
  EXPECT_NE(message("dependent_launch=yes").find("expected on|off"), std::string::npos);
  EXPECT_EQ(p, KernelPlan{});  // nothing was changed by the rejected assignments
}

TEST(Exec, HoldsDevicePlanAndProfiling) {
  KernelPlan plan;
  plan.set("fuse_decode=off");
  Exec exec(Device::cpu, plan);
  EXPECT_EQ(exec.device(), Device::cpu);
  EXPECT_EQ(exec.plan(), plan);
  exec.set_profiling(true);  // on only where a CUDA device can time ops
  EXPECT_EQ(exec.profiling(), device_available(Device::cuda));
  exec.set_profiling(false);
  EXPECT_FALSE(exec.profiling());
  {
    const ExecScope outer(exec);
    const ExecScope inner(exec);  // scopes nest
  }
  exec.synchronize();  // nothing queued: returns at once
}

}  // namespace
}  // namespace mamba::ops
