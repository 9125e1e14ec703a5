// Tokenizer entry points (see tokenizer.h): tokenizer.json dispatch, the shared decode,
// the raw-byte tokenizer and the streaming decoder.
#include "tokenizer/tokenizer.h"

#include "core/file_util.h"
#include "core/json_guard.h"
#include "tokenizer/bpe.h"
#include "tokenizer/utf8.h"

namespace mamba::tok {

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      throw_error(ErrorCode::out_of_range, "decode: token id ", id, " is not in the vocabulary (",
                  vocab_size(), " ids)");
    }
    bytes += token_text(id);
  }
  return utf8_lossy(bytes);
}

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::string& path) {
  return from_json_text(read_file(path), path);
}

std::unique_ptr<Tokenizer> Tokenizer::from_json_text(const std::string& text, const std::string& path) {
  check_json_depth(text, path);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw_error(ErrorCode::parse, path, ": not valid JSON (", e.what(), ")");
  }
  if (!root.is_object()) {
    throw_error(ErrorCode::parse, path, ": expected a JSON object at the top level, found ",
                root.type_name());
  }
  const JsonPlace file{path, ""};
  const json& model = require_field(root, "model", file);
  require_object(model, file / "model");
  // HF infers the model from its fields when "type" is absent; BPE is the one with merges.
  std::string type = model.contains("merges") ? "BPE" : "";
  if (const json* field = find_field(model, "type")) type = get_string(*field, file / "model" / "type");
  if (type != "BPE") {
    (file / "model" / "type")
        .fail(ErrorCode::unsupported, "model \"", type, "\" is not supported (expected BPE)");
  }
  try {
    return std::make_unique<BpeTokenizer>(root, path);
  } catch (const json::exception& e) {  // a field of an unexpected type our checks missed
    throw_error(ErrorCode::parse, path, ": ", e.what());
  }
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<uint8_t>(text[i]);
  return ids;
}

std::string ByteTokenizer::token_text(int32_t id) const {
  if (id < 0 || id > 255) return {};
  return std::string(1, static_cast<char>(id));
}

std::optional<int32_t> ByteTokenizer::token_id(std::string_view token) const {
  if (token.size() != 1) return std::nullopt;
  return static_cast<uint8_t>(token[0]);
}

std::string StreamDecoder::push(int32_t id) {
  if (stream_) return stream_->push(id);
  if (id < 0 || id >= tokenizer_.vocab_size()) return {};
  pending_ += tokenizer_.token_text(id);
  std::string out;
  const size_t used = utf8_append_lossy(pending_, out, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  if (stream_) return stream_->flush();
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace mamba::tok
