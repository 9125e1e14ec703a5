// falcon_h1: not implemented yet (stub refused at load).
#include "core/error.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

void configure(io::ModelConfig&, const std::string& source) {
  throw_error(ErrorCode::unsupported, source, ": model_type 'falcon_h1' is not supported yet");
}
void build_block(const io::ModelConfig&, int64_t, Block&) {}

}  // namespace

extern const Family kFalconH1{"falcon_h1", configure, build_block};

}  // namespace mamba::models
