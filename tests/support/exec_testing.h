// The execution context of the tests that call ops or a model directly (ops/exec.h): one per test
// binary, on the default kernel plan, never destroyed (its CUDA objects would outlive the driver at
// exit), and bound to the main thread for the whole run, so that the CUDA tests which call a
// kernel's launcher directly (no op front binds one) and their tensor copies run on its stream.
// The tests run on the main thread, as the Exec contract asks.
#pragma once
#include "ops/exec.h"

namespace mamba::testing {

inline ops::Exec& exec = *new ops::Exec();
inline const ops::ExecScope bind_exec{exec};  // after `exec`: inline variables initialize in order

}  // namespace mamba::testing

using mamba::testing::exec;
