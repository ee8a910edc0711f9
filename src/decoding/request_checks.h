// decoding/request_checks.h: validation of generation requests, before any work starts.
#pragma once

#include <cstdint>
#include <vector>

#include "kestrel/decoder.h"

namespace kestrel {

// Checks one request against the model and session limits and returns its prompt ids
// (tokenized when given as text). Errors name the request index and the field at fault.
std::vector<int32_t> checked_prompt(const GenerationRequest& request, size_t index, const Model& model,
                                    const SessionOptions& session);

}  // namespace kestrel
