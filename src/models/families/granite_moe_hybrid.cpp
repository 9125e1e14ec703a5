// granitemoehybrid: not implemented yet (stub refused at load).
#include "core/error.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

void configure(io::ModelConfig&, const std::string& source) {
  throw_error(ErrorCode::unsupported, source, ": model_type 'granitemoehybrid' is not supported yet");
}
void build_block(const io::ModelConfig&, int64_t, Block&) {}

}  // namespace

extern const Family kGraniteMoeHybrid{"granitemoehybrid", configure, build_block};

}  // namespace mamba::models
