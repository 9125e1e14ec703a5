// Tokenizer and eos ids of a model folder (see model_files.h).
#include "runtime/model_files.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"
#include "runtime/gguf_tokenizer.h"

namespace mamba::runtime {
namespace {

// eos_token_id of a JSON file as a list of ids; nullopt when the file or the field is absent.
std::optional<std::vector<int32_t>> eos_in(const std::string& path) {
  if (!file_exists(path)) return std::nullopt;
  const std::string text = read_file(path);
  check_json_depth(text, path);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_error(ErrorCode::parse, path, ": not valid JSON");
  if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return std::nullopt;
  const nlohmann::json& v = j["eos_token_id"];
  std::vector<int32_t> ids;
  for (const nlohmann::json& id : v.is_array() ? v : nlohmann::json::array({v})) {
    if (!id.is_number_integer())
      throw_error(ErrorCode::parse, path, ": eos_token_id: expected an integer or a list of integers, found ",
                  json_excerpt(v));
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

}  // namespace

std::unique_ptr<tok::Tokenizer> load_tokenizer(const std::string& model_dir, const std::string& path) {
  if (path == "byte") return std::make_unique<tok::ByteTokenizer>();
  if (!path.empty()) return tok::Tokenizer::from_file(path);
  if (model_dir.ends_with(".gguf")) return load_gguf_tokenizer(model_dir);  // its tokenizer.ggml.*
  const std::string in_dir = path_join(model_dir, "tokenizer.json");
  if (file_exists(in_dir)) return tok::Tokenizer::from_file(in_dir);
  const std::string config = path_join(model_dir, "config.json");
  if (model_dir.empty() || !file_exists(config)) return nullptr;
  const nlohmann::json j = nlohmann::json::parse(read_file(config), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("tokenizer"))
    return nullptr;  // a malformed file is Model::load's to report
  const nlohmann::json& v = j["tokenizer"];
  if (v != "byte")
    throw_error(ErrorCode::parse, config, ": tokenizer: expected \"byte\", found ",
                v.is_string() ? "'" + v.get<std::string>().substr(0, 40) + "'" : std::string(v.type_name()));
  return std::make_unique<tok::ByteTokenizer>();
}

std::vector<int32_t> eos_token_ids(const std::string& model_dir, const tok::Tokenizer* tokenizer) {
  if (model_dir.ends_with(".gguf") && file_exists(model_dir)) {
    const io::GgufFile g = io::GgufFile::open(model_dir);
    if (auto eos = gguf_vocab_info(g).eos) return {*eos};
  }
  for (const char* name : {"generation_config.json", "config.json"})
    if (auto ids = eos_in(path_join(model_dir, name))) return *ids;
  if (tokenizer) {
    if (auto id = tokenizer->eos_id()) return {*id};
    if (auto id = tokenizer->token_id("<|endoftext|>")) return {*id};
  }
  return {};
}

}  // namespace mamba::runtime
