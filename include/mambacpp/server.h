// mambacpp public API, the server part: the OpenAI-compatible HTTP server (`mambacpp serve`) over
// one loaded model. Separate from <mambacpp/mambacpp.h> because it links cpp-httplib.
//
//   mambacpp::server::ServerOptions options;   // host, port, parallel slots, cache size, API key
//   mambacpp::server::Server server(model, tokenizer, options);  // tokenizer: shared_ptr, may be null
//   server.bind(); server.run();                                  // shutdown() from another thread
#pragma once

#include <mambacpp/mambacpp.h>

#include "server/server.h"

namespace mambacpp {

namespace server = mamba::server;

}  // namespace mambacpp
