// The fuzzed surfaces: each entry feeds one input to the same function the program uses on that
// kind of input (a file path for files, the request parser for HTTP bodies). An entry returns
// true when the input was accepted and false when it was refused with a clean one-line error
// (mamba::Error, or server::RequestError for requests); anything else (another exception, a
// crash, a sanitizer report, a hang) is a defect. Shared by the libFuzzer targets
// (fuzz_target.cpp) and the regression replay (replay.cpp), which runs in every build.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mamba::fuzz {

using Entry = bool (*)(const uint8_t* data, size_t size);

// safetensors: the bytes as a .safetensors file -> SafeTensors::open, then every tensor read.
bool safetensors(const uint8_t* data, size_t size);
// gguf: the bytes as a .gguf file -> GgufFile::open, every tensor read and dequantized, then
// Model::load of the file (config from the metadata, weights by llama.cpp's names).
bool gguf(const uint8_t* data, size_t size);
// config: the bytes as DIR/config.json -> Model::load(DIR) (config, family, build; no weights).
bool config(const uint8_t* data, size_t size);
// npy: the bytes as a .npy file -> io::read_npy.
bool npy(const uint8_t* data, size_t size);
// tokenizer_json: the bytes as tokenizer.json -> Tokenizer::from_file, then encode/decode probes.
bool tokenizer_json(const uint8_t* data, size_t size);
// tokenize: byte 0 picks a fixture tokenizer; the rest is text to encode and ids to decode.
bool tokenize(const uint8_t* data, size_t size);
// state: a state file for the ssm-hybrid fixture -> runtime::load_state. Byte 0 odd: the trailing
// checksum is recomputed first, so the fuzzer reaches the record parser.
bool state(const uint8_t* data, size_t size);
// bin: the bytes as pytorch_model.bin -> io::read_torch_checkpoint (zip + restricted unpickler).
bool bin(const uint8_t* data, size_t size);
// chat_template: the bytes as a Jinja chat template -> ChatTemplate::parse + render.
bool chat_template(const uint8_t* data, size_t size);
// request: byte 0 picks the endpoint; the rest is an HTTP body -> server::parse_request_body, and
// a chat request's messages rendered with a fixture template, as the server does.
bool request(const uint8_t* data, size_t size);

// image: the bytes as an image file -> io::read_image (PNG or JPEG by signature), then the
// evaluation transform at a small size (resize 20, crop 16) of io::preprocess_image.
bool image(const uint8_t* data, size_t size);

// vim: the bytes as config.json of a Vim folder beside a tiny checkpoint -> models::VimModel::load,
// then a forward pass on one image when the config matches the weights.
bool vim(const uint8_t* data, size_t size);

// Entry by surface name (the names above), nullptr for an unknown one.
Entry find_entry(const std::string& surface);

// Writes seed state files (with the leading mode byte) for the `state` surface into `dir`.
void write_state_seeds(const std::string& dir);

// One-time setup of every fuzzing process: a small memory ceiling (256 MiB) so that a size the
// checks let through fails as an Error instead of exhausting the fuzzer's memory.
void init();

}  // namespace mamba::fuzz
