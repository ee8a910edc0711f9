// tools/gguf_to_hf.h: what a Hugging Face directory of a GGUF model needs, for
// kestrel-quantize's stored-weight checkpoints of GGUF sources (tools/quantized_checkpoint.h).
//
// Llama-architecture GGUF files with a byte-level BPE tokenizer (SmolLM2, the tiny
// fixtures) only: config.json is rebuilt from the GGUF metadata and checked by reading it
// back (the architecture it describes must equal the GGUF's: dimensions, norm epsilon,
// rotary frequencies, tied head), tokenizer.json and tokenizer_config.json are written
// from the GGUF tokenizer, and each GGUF tensor gets its Hugging Face name through the two
// architectures' weight recipes. llama.cpp's converter permutes the rows of Q and K in
// every head for its adjacent-pair rotary; those rows are put back in Hugging Face's
// half-split order. Anything else is refused with Error(unsupported) naming what is missing.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kestrel/model.h"

namespace kestrel::tools {

struct HfLayout {
  nlohmann::json config;            // config.json
  nlohmann::json tokenizer;         // tokenizer.json
  nlohmann::json tokenizer_config;  // tokenizer_config.json
  struct Target {
    std::string name;           // the Hugging Face tensor name
    int64_t rotary_head_dim = 0;  // > 0: rows of each head of this size go back to HF's order
  };
  std::map<std::string, Target, std::less<>> tensors;  // by GGUF tensor name
};

// The layout of `model`, loaded from a GGUF file.
HfLayout hf_layout_from_gguf(const Model& model);

// Rows of w [rows, cols], heads of head_dim rows each, from llama.cpp's rotary order (row
// 2i + p of a head) to Hugging Face's (row p * head_dim / 2 + i), in place.
void unpermute_rotary_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t head_dim);

}  // namespace kestrel::tools
