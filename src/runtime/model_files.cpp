// Tokenizer and eos ids of a model folder (see model_files.h).
#include "runtime/model_files.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::runtime {
namespace {

// eos_token_id of a JSON file as a list of ids; nullopt when the file or the field is absent.
std::optional<std::vector<int32_t>> eos_in(const std::string& path) {
  if (!file_exists(path)) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_error(ErrorCode::parse, path, ": not valid JSON");
  if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return std::nullopt;
  const nlohmann::json& v = j["eos_token_id"];
  std::vector<int32_t> ids;
  for (const nlohmann::json& id : v.is_array() ? v : nlohmann::json::array({v})) {
    if (!id.is_number_integer())
      throw_error(ErrorCode::parse, path, ": eos_token_id: expected an integer or a list of integers, found ",
                  v.dump());
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

}  // namespace

std::unique_ptr<tok::Tokenizer> load_tokenizer(const std::string& model_dir, const std::string& path) {
  if (!path.empty()) return tok::Tokenizer::from_file(path);
  const std::string in_dir = path_join(model_dir, "tokenizer.json");
  return file_exists(in_dir) ? tok::Tokenizer::from_file(in_dir) : nullptr;
}

std::vector<int32_t> eos_token_ids(const std::string& model_dir, const tok::Tokenizer* tokenizer) {
  for (const char* name : {"generation_config.json", "config.json"})
    if (auto ids = eos_in(path_join(model_dir, name))) return *ids;
  if (tokenizer) {
    if (auto id = tokenizer->eos_id()) return {*id};
    if (auto id = tokenizer->token_id("<|endoftext|>")) return {*id};
  }
  return {};
}

}  // namespace mamba::runtime
