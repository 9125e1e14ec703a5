// Model fingerprints and state files: what a session needs to continue a sequence later or in
// another process, refused (one-line Error) when the file is damaged or from another model.
//
// File layout (little-endian; version 1):
//   "MAMBAST\0" | u32 version | u32 0 | u64 fingerprint.config, .params, .weights
//   | i64 position | i64 batch | u64 n_records
//   | n_records × { u32 name_len, name, u32 dtype, u32 ndim, i64 dims[ndim], raw bytes }
//   | u64 checksum of every byte before it
// Records: "logits" f32 [batch, vocab_padded] (after the last token consumed; absent before
// any), "tokens" i32 [n] (recent tokens, for the sampler's penalties), then every tensor of
// every layer as "layers.<i>.<name>" (LayerState::visit names). KV caches are stored trimmed
// to `position` entries, so a file holds exactly what was processed.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "models/model.h"

namespace mamba::runtime {

// Identity of a model for state files: its config, every parameter's name and shape, and a
// checksum of every weight byte.
struct Fingerprint {
  uint64_t config = 0, params = 0, weights = 0;

  uint64_t combined() const;
  std::string str() const;  // 16 hex digits of combined()
  bool operator==(const Fingerprint&) const = default;
};

// Reads every weight byte (in parallel, at memory speed): compute it once per model and keep it
// (Session does).
Fingerprint fingerprint(const models::Model& model);

// Everything a session carries between calls, for one sequence or a batch.
struct SessionState {
  models::State state;
  Tensor logits;                // [batch, vocab_padded] after the last token consumed; undefined before any
  std::vector<int32_t> tokens;  // recent tokens of a batch-1 sequence (penalty window), oldest first
};

// Serialization. `source` names the data in error messages (a path, or "<bytes>").
std::string state_to_bytes(const models::Model& model, const Fingerprint& fp, const SessionState& s);
SessionState state_from_bytes(const models::Model& model, const Fingerprint& fp, std::string_view bytes,
                              const std::string& source = "<bytes>");
// Written atomically (temp file + rename): a crash never leaves a half-written state file.
void save_state(const std::string& path, const models::Model& model, const Fingerprint& fp,
                const SessionState& s);
SessionState load_state(const std::string& path, const models::Model& model, const Fingerprint& fp);

}  // namespace mamba::runtime
