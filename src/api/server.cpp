// The public Server (server.h) over server::Server.
#include "server/server.h"

#include "internal.h"

namespace mambacpp {

struct Server::Impl {
  mamba::server::Server server;
};

Server::Server(const Model& model, std::shared_ptr<const Tokenizer> tokenizer, const ServerOptions& o)
    : impl_(guard([&] {
        mamba::server::ServerOptions inner;
        inner.model_dir = o.model_dir;
        inner.model_name = o.model_name;
        inner.host = o.host;
        inner.port = o.port;
        inner.parallel = o.parallel;
        inner.max_queue = o.max_queue;
        inner.cache_mib = o.cache_mib;
        inner.cache_host_mib = o.cache_host_mib;
        inner.cache_every = o.cache_every;
        inner.prefill_chunk = o.prefill_chunk;
        inner.api_key = o.api_key;
        inner.ctx_size = o.ctx_size;
        inner.default_max_tokens = o.default_max_tokens;
        inner.max_body_bytes = o.max_body_bytes;
        inner.http_threads = o.http_threads;
        inner.shutdown_grace = o.shutdown_grace;
        inner.log = o.log;
        // Impl is built in place: the internal server does not move.
        return std::unique_ptr<Impl>(
            new Impl{mamba::server::Server(unwrap(model), unwrap_shared(tokenizer), inner)});
      })) {}
Server::~Server() = default;
int Server::bind() {
  return guard([&] { return impl_->server.bind(); });
}
void Server::run() {
  guard([&] { impl_->server.run(); });
}
void Server::shutdown() {
  impl_->server.shutdown();
}

}  // namespace mambacpp
