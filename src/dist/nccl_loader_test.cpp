// The NCCL forwarders (nccl_loader.cpp) against the installed library: it opens, every forwarded
// function resolves, and a call goes through to it. No GPU is needed.
#include "dist/nccl_loader.h"

#include <gtest/gtest.h>
#include <nccl.h>

#include <string>

TEST(NcclLoader, EveryForwardedFunctionResolves) {
  EXPECT_EQ(mamba::dist::nccl_backend::load_check(), "");
}

TEST(NcclLoader, CallsReachTheLibrary) {
  // The library's own texts, one per result; with it missing every result gives one text naming it.
  const std::string ok = ncclGetErrorString(ncclSuccess);
  const std::string bad = ncclGetErrorString(ncclInvalidArgument);
  EXPECT_EQ(ok.find("could not be loaded"), std::string::npos) << ok;
  EXPECT_FALSE(ok.empty());
  EXPECT_NE(ok, bad);
}
