// tests/fuzz/tokenizer_checks.h: what the tokenizer targets do with a tokenizer they built.
#pragma once

#include <cstdlib>
#include <string_view>

#include "kestrel/tokenizer.h"

namespace kestrel::fuzz {

// Encodes a text that touches every pre-tokenizer branch (letters, digits, contractions,
// spaces, newlines, non-ASCII, invalid UTF-8), checks the ids are in range, decodes them,
// and reads every token's bytes. Errors other than kestrel::Error escape.
inline void exercise(const Tokenizer& tok) {
  constexpr std::string_view kText =
      "Hello, world! It's 2024: 12345 caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82\n\n"
      "\t  <|endoftext|> <|im_start|>user\n\xff\xfe\xc0\xaf end";
  const int32_t n = tok.vocab_size();
  for (bool parse_special : {true, false}) {
    for (int32_t id : tok.encode(kText, parse_special)) {
      if (id < 0 || id >= n) std::abort();
    }
  }
  std::vector<int32_t> ids = tok.encode(kText);
  (void)tok.decode(ids);
  (void)tok.decode(ids, /*skip_special=*/true);
  const int32_t shown = n < 4096 ? n : 4096;
  for (int32_t id = 0; id < shown; ++id) {
    (void)tok.token_bytes(id);
    (void)tok.token_id(tok.token_text(id));
  }
}

}  // namespace kestrel::fuzz
