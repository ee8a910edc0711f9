// server/routes.h: the HTTP API of kestrel-server over an Engine.
//   POST /v1/completions, POST /v1/chat/completions  (stream false: one JSON object;
//        stream true: server-sent events "data: {chunk}\n\n" ending with "data: [DONE]")
//   GET  /v1/models, GET /health, GET /metrics (Prometheus text format)
// Errors are OpenAI error objects: 400 for a bad request, 404 for an unknown route, 413 for
// a body over the limit, 503 with Retry-After when the engine's queue is full, 500 when a
// request fails inside the engine. A client that goes away, streaming or not, has its
// request cancelled (its slot and KV blocks freed at the engine's next step).
#pragma once

#include <httplib.h>
#include <kestrel/engine.h>

#include "metrics.h"
#include "openai_request.h"

namespace kestrel_server {

struct RouteOptions {
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
};

// Registers the routes and the error handlers; the engine, model and metrics must outlive
// the server.
void add_routes(httplib::Server& server, kestrel::Engine& engine, const ServedModel& served, Metrics& metrics,
                const RouteOptions& options);

}  // namespace kestrel_server
