// The cuBLAS forwarders (cublas_loader.cpp) against the installed library: it opens, every
// forwarded function resolves, and a call goes through to it. No GPU is needed.
#include "backend/cuda/cublas_loader.h"

#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <string>

TEST(CublasLoader, EveryForwardedFunctionResolves) {
  EXPECT_EQ(mamba::cuda::cublas_load_check(), "");
}

TEST(CublasLoader, CallsReachTheLibrary) {
  // The status texts are the library's own, one per status; with the library missing, every status
  // gives the same text naming it.
  const std::string ok = cublasGetStatusString(CUBLAS_STATUS_SUCCESS);
  const std::string bad = cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(ok.find("could not be loaded"), std::string::npos) << ok;
  EXPECT_FALSE(ok.empty());
  EXPECT_NE(ok, bad);
}
