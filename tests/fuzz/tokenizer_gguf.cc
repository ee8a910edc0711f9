// Fuzz target: a GGUF file's tokenizer.ggml.* metadata into a Tokenizer, then an
// encode / decode of a fixed text with it.
#include "fuzz_support.h"
#include "tokenizer_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  const auto path = fuzz::write_file("tokenizer.gguf", fuzz::as_text(data, size));
  fuzz::expect_only_kestrel_errors([&] { fuzz::exercise(Tokenizer::from_gguf_file(path)); });
  return 0;
}
