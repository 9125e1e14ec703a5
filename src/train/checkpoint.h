// Training checkpoints: ROOT/step_00000100/ holds config.json + model.safetensors (the
// state-spaces/mamba format, loadable by Model::load), optimizer.safetensors and trainer.json;
// ROOT/latest names the newest. A checkpoint is written into step_N.tmp/ and renamed, then
// `latest` is replaced atomically, so a crash leaves the previous checkpoint intact.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace mamba::train {

// "step_00000100"
std::string checkpoint_name(int64_t step);

// Writes checkpoint `step` under `root`: `write(dir)` fills the temporary folder, which is then
// renamed into place and named by ROOT/latest; older step_* folders beyond the newest `keep`
// are removed. Returns the checkpoint's folder.
std::string write_checkpoint(const std::string& root, int64_t step, int64_t keep,
                             const std::function<void(const std::string& dir)>& write);

// The checkpoint folder `path` means: ROOT (with a `latest` file) -> ROOT/<latest>; a folder
// holding trainer.json -> itself. Throws Error(not_found) otherwise.
std::string resolve_checkpoint(const std::string& path);

// A model folder for evaluation: a checkpoint ROOT -> its latest checkpoint; anything else as is.
std::string resolve_model_dir(const std::string& path);

}  // namespace mamba::train
