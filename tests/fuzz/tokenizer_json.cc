// Fuzz target: a Hugging Face tokenizer.json into a Tokenizer (JSON reading, the spec's
// validation, BPE tables), then an encode / decode of a fixed text with it.
#include "fuzz_support.h"
#include "tokenizer_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  const auto path = fuzz::write_file("tokenizer.json", fuzz::as_text(data, size));
  fuzz::expect_only_kestrel_errors([&] { fuzz::exercise(Tokenizer::from_json_file(path)); });
  return 0;
}
