// tokenizer/tokenizer_gguf.h: the tokenizer stored in a GGUF file's metadata.
#pragma once

#include "kestrel/tokenizer.h"
#include "loaders/gguf.h"

namespace kestrel::tokenizer {

// Reads llama.cpp's tokenizer.ggml.* keys into a spec. Only byte-level BPE
// (tokenizer.ggml.model "gpt2") is supported; anything else throws Error(unsupported)
// naming the value. Errors name the file and the key.
//   tokens        the vocab (byte-level strings; control / user-defined tokens plain text)
//   merges        "left right" strings in priority order
//   token_type    3 (control) -> special_ids, 4 (user-defined) -> added_ids
//   pre           "gpt-2" / "default" / absent -> gpt2, "smollm" -> smollm,
//                 "llama-bpe" / "llama3" / "llama-v3" -> llama3 (with ignore_merges and
//                 add_bos by default, as llama.cpp does), "gpt-4o" -> gpt4o (the o200k
//                 regex as tokenizer.json spells it; llama.cpp runs a rewrite of it that
//                 splits combining marks from their letters)
//   bos_token_id, eos_token_id, add_bos_token, add_eos_token
TokenizerSpec read_gguf_tokenizer(const GgufFile& file);

}  // namespace kestrel::tokenizer
