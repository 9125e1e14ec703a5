// The fuzzed surfaces (see entries.h). File formats are written to a private temporary folder and
// read back through the program's own loaders, so the fuzzers test exactly what a user runs.
#include "entries.h"

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "io/gguf.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "models/model.h"
#include "models/vim.h"
#include "ops/exec.h"
#include "runtime/hash.h"
#include "runtime/model_files.h"
#include "runtime/state_io.h"
#include "sampling/sampler.h"
#include "server/openai.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace mamba::fuzz {
namespace {

namespace fs = std::filesystem;

std::string fixtures_dir() {
  if (const char* env = std::getenv("MAMBACPP_FIXTURES"); env && *env) return env;
  return MAMBACPP_FIXTURES_DEFAULT;
}

// A private folder for this process, removed at exit.
const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/mambacpp-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed: " + pattern);
    static const std::string keep = pattern;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(keep, ec);
    });
    return pattern;
  }();
  return dir;
}

// Writes the input to `name` in the scratch folder (plain write: the atomic rename costs time).
std::string put(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  if (size > 0 && std::fwrite(data, 1, size, f) != size) throw std::runtime_error("short write " + path);
  std::fclose(f);
  return path;
}

// Runs `fn`; true when it returns, false when it throws mamba::Error. Anything else propagates.
template <typename F>
bool clean(F&& fn) {
  try {
    fn();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Sums a tensor's bytes so that a view past its buffer is read (ASan sees it).
uint64_t touch(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* p = static_cast<const unsigned char*>(c.raw());
  uint64_t sum = 0;
  for (size_t i = 0; i < c.nbytes(); ++i) sum += p[i];
  return sum;
}

volatile uint64_t g_sink = 0;

}  // namespace

void init() {
  set_memory_ceiling(uint64_t{256} << 20);
  scratch_dir();
}

bool safetensors(const uint8_t* data, size_t size) {
  const std::string path = put("model.safetensors", data, size);
  return clean([&] {
    const io::SafeTensors st = io::SafeTensors::open(path);
    for (const std::string& name : st.names()) {
      const io::TensorInfo* info = st.find(name);
      if (info->dtype == DType::f32 || info->dtype == DType::bf16 || info->dtype == DType::f16)
        g_sink = g_sink + touch(st.get_f32(name));
      else if (info->dtype)
        g_sink = g_sink + touch(st.get(name));
    }
  });
}

bool gguf(const uint8_t* data, size_t size) {
  const std::string path = put("model.gguf", data, size);
  const bool opened = clean([&] {
    const io::GgufFile g = io::GgufFile::open(path);
    for (const io::GgufTensorInfo& t : g.tensors()) {
      g_sink = g_sink + touch(g.get(t.name));
      if (t.bytes <= (uint64_t{16} << 20)) g_sink = g_sink + touch(g.get_f32(t.name, t.shape));
    }
  });
  if (!opened) return false;
  clean([&] { runtime::load_tokenizer(path); });  // tokenizer.ggml.* (runtime/gguf_tokenizer) too
  return clean([&] { models::Model::load(path); });
}

bool config(const uint8_t* data, size_t size) {
  const std::string dir = scratch_dir() + "/model";
  fs::create_directories(dir);
  put("model/config.json", data, size);
  // No weights are written: a config that passes every check ends in Error(not_found) for the
  // missing model.safetensors, after the model has been built from it (counted as accepted).
  try {
    models::Model::load(dir);
    return true;
  } catch (const Error& e) {
    return e.code() == ErrorCode::not_found;
  }
}

bool npy(const uint8_t* data, size_t size) {
  const std::string path = put("array.npy", data, size);
  return clean([&] { g_sink = g_sink + touch(io::read_npy(path)); });
}

namespace {

// Encodes and decodes a few probes with `tok`, checking the stream decoder against decode().
void probe(const tok::Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const Error&) {
    return;  // text that is not valid UTF-8 where the tokenizer needs it
  }
  const std::string decoded = tok.decode(ids);
  tok::StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  if (streamed != decoded) {
    std::fprintf(stderr, "stream decode differs from decode\n");
    std::abort();
  }
  for (int32_t id : ids) g_sink = g_sink + tok.token_text(id).size();
}

}  // namespace

bool tokenizer_json(const uint8_t* data, size_t size) {
  const std::string path = put("tokenizer.json", data, size);
  return clean([&] {
    const std::unique_ptr<tok::Tokenizer> tok = tok::Tokenizer::from_file(path);
    for (const char* text : {"Hello world", " <s>a</s>\n\n  x", "caf\xc3\xa9 \xe2\x96\x81 12345 !?",
                             "\xff\xfe", "<|endoftext|><unk>"})
      probe(*tok, text);
    std::vector<int32_t> ids;
    for (int32_t id = 0; id < std::min(tok->vocab_size(), 300); ++id) ids.push_back(id);
    g_sink = g_sink + tok->decode(ids).size();
    (void)tok->bos_id();
    (void)tok->eos_id();
  });
}

bool tokenize(const uint8_t* data, size_t size) {
  static const std::vector<std::unique_ptr<tok::Tokenizer>> tokenizers = [] {
    std::vector<std::unique_ptr<tok::Tokenizer>> out;
    for (const char* name : {"bpe-gpt2-style", "bpe-llama3-style", "spm-metaspace", "spm-legacy"})
      out.push_back(tok::Tokenizer::from_file(fixtures_dir() + "/tokenizers/" + name + "/tokenizer.json"));
    out.push_back(std::make_unique<tok::ByteTokenizer>());
    return out;
  }();
  if (size == 0) return false;
  const tok::Tokenizer& tok = *tokenizers[data[0] % tokenizers.size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  probe(tok, text);
  // The same bytes as ids (ids outside the vocabulary: a clean Error from decode).
  std::vector<int32_t> ids(text.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    uint16_t v;
    std::memcpy(&v, text.data() + 2 * i, 2);
    ids[i] = static_cast<int32_t>(v % static_cast<uint32_t>(tok.vocab_size() + 2));
  }
  tok::StreamDecoder stream(tok);
  for (int32_t id : ids) g_sink = g_sink + stream.push(id).size();
  g_sink = g_sink + stream.flush().size();
  return clean([&] { g_sink = g_sink + tok.decode(ids).size(); });
}

namespace {

struct StateModel {
  models::Model model;
  runtime::Fingerprint fp;
};

const StateModel& state_model() {
  static const StateModel m = [] {
    models::Model model = models::Model::load(fixtures_dir() + "/ssm-hybrid");
    const runtime::Fingerprint fp = runtime::fingerprint(model);
    return StateModel{std::move(model), fp};
  }();
  return m;
}

}  // namespace

bool state(const uint8_t* data, size_t size) {
  const StateModel& m = state_model();
  if (size == 0) return false;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) && bytes.size() >= 8) {
    const uint64_t sum = runtime::hash_string(std::string_view(bytes).substr(0, bytes.size() - 8));
    std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
  }
  const std::string path = put("state.bin", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return clean([&] {
    const runtime::SessionState s = runtime::load_state(path, m.model, m.fp);
    if (s.logits.defined()) g_sink = g_sink + touch(s.logits);
    for (const models::LayerState& layer : s.state.layers) {
      models::LayerState copy = layer;
      copy.visit([&](const char*, Tensor& t) { g_sink = g_sink + touch(t); });
    }
  });
}

void write_state_seeds(const std::string& dir) {
  const StateModel& m = state_model();
  fs::create_directories(dir);
  int n = 0;
  for (int64_t steps : {0, 3}) {
    runtime::SessionState s;
    s.state = m.model.new_state(1);
    if (steps > 0) {
      Tensor ids = Tensor::empty({1, steps}, DType::i32);
      for (int64_t i = 0; i < steps; ++i) ids.data<int32_t>()[i] = static_cast<int32_t>(10 + i);
      ops::Exec exec(m.model.device());
      Tensor logits = m.model.forward(exec, ids, s.state, 1);
      s.logits = logits.contiguous().view({1, logits.size(-1)});
      s.tokens = {10, 11, 12};
    }
    for (char mode : {'\1', '\0'}) {
      const std::string bytes = mode + runtime::state_to_bytes(m.model, m.fp, s);
      write_file_atomic(dir + "/seed_" + std::to_string(n++), bytes);
    }
  }
}

bool bin(const uint8_t* data, size_t size) {
  const std::string path = put("pytorch_model.bin", data, size);
  return clean([&] {
    for (const io::TorchTensor& t : io::read_torch_checkpoint(path).tensors) {
      const auto* p = static_cast<const unsigned char*>(t.data->data());
      uint64_t sum = 0;
      for (size_t i = 0; i < t.bytes; ++i) sum += p[i];
      g_sink = g_sink + sum;
    }
  });
}

namespace {

const nlohmann::json& conversation() {
  static const nlohmann::json messages = nlohmann::json::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi <b>there</b> {{ x }}"},
    {"role": "assistant", "content": "Hello.", "tool_calls": [{"type": "function",
      "function": {"name": "f", "arguments": {"a": 1}}}]},
    {"role": "tool", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "and now?"}]}])");
  return messages;
}

}  // namespace

bool chat_template(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  return clean([&] {
    const tmpl::ChatTemplate t = tmpl::ChatTemplate::parse(source, "fuzz.jinja");
    const nlohmann::json extra = {
        {"tools", nlohmann::json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})},
        {"enable_thinking", true}};
    g_sink = g_sink + t.render(conversation(), true, "<s>", "</s>", extra).size();
  });
}

bool request(const uint8_t* data, size_t size) {
  static const tmpl::ChatTemplate chat = tmpl::ChatTemplate::parse(
      read_file(std::string(MAMBACPP_SOURCE_DIR) + "/tests/data/chat_templates/chatml_qwen_tools.jinja"),
      "chatml_qwen_tools.jinja");
  if (size == 0) return false;
  const auto endpoint = data[0] & 1 ? server::Endpoint::chat_completions : server::Endpoint::completions;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const server::CompletionRequest r = server::parse_request_body(body, endpoint);
    sampling::validate(r.sampling);
    if (endpoint == server::Endpoint::chat_completions)
      g_sink = g_sink + chat.render(r.messages, true, "<s>", "</s>", r.template_kwargs).size();
    return true;
  } catch (const server::RequestError&) {
    return false;
  } catch (const Error&) {
    return false;
  }
}

bool image(const uint8_t* data, size_t size) {
  const std::string path = put("image", data, size);
  // A 64 KiB ceiling (a 147 x 147 RGB image) for this surface: headers claiming more are refused
  // before allocation all the same, and inputs that had a large buffer allocated and zeroed (page
  // faults under ASan) only to find the data truncated held the run at ~200-300 inputs/s.
  struct CeilingScope {
    uint64_t old = memory_ceiling();
    CeilingScope() { set_memory_ceiling(uint64_t{64} << 10); }
    ~CeilingScope() { set_memory_ceiling(old); }
  } ceiling;
  return clean([&] {
    const io::Image img = io::read_image(path);
    // Decoding is the hostile surface; the resize of a large image that decoded is arithmetic the
    // small ones (up to 64 x 64) cover; under comparison tracing it cost ~5 ms an input.
    if (img.width * img.height > (1 << 12)) return;
    io::ImageTransform t;
    t.resize = 20;
    t.crop = 16;
    g_sink = g_sink + touch(io::preprocess_image(img, t, path));
  });
}

bool vim(const uint8_t* data, size_t size) {
  // The folder holds the tiny checkpoint of tests/data/vim_pth (embed 16, depth 2, 32x32, patch 8);
  // the input is its config.json. A config the checks let through either disagrees with the
  // weights (Error) or describes them, and then classifies one image.
  static const std::string dir = [] {
    const std::string d = scratch_dir() + "/vim";
    fs::create_directories(d);
    fs::copy_file(std::string(MAMBACPP_SOURCE_DIR) + "/tests/data/vim_pth/model.safetensors",
                  d + "/model.safetensors", fs::copy_options::overwrite_existing);
    return d;
  }();
  put("vim/config.json", data, size);
  return clean([&] {
    const models::VimModel m = models::VimModel::load(dir);
    const models::VimConfig& c = m.config();
    ops::Exec exec;
    g_sink = g_sink + touch(m.forward(exec, Tensor::zeros({1, c.channels, c.img_size, c.img_size})));
  });
}

Entry find_entry(const std::string& surface) {
  static const std::map<std::string, Entry> entries = {
      {"safetensors", safetensors}, {"config", config}, {"npy", npy},     {"tokenizer_json", tokenizer_json},
      {"tokenize", tokenize},       {"state", state},   {"bin", bin},     {"chat_template", chat_template},
      {"request", request},         {"gguf", gguf},     {"image", image}, {"vim", vim},
  };
  auto it = entries.find(surface);
  return it == entries.end() ? nullptr : it->second;
}

}  // namespace mamba::fuzz
