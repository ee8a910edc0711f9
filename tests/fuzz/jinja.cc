// Fuzz target: the Jinja engine (src/tokenizer/jinja/) through apply_chat_template_json,
// with any template text, messages JSON and extra context JSON. Only kestrel::Error may
// come out: syntax errors, what templates raise, runaway limits (output size, steps,
// macro depth); never a crash, a hang or a leak.
//   input[0]: add_generation_prompt (bit 0)
//   the rest, split at the first two NUL bytes: template, messages (a JSON array), extra
//   context (a JSON object); missing parts are "[]" and "{}".
#include <vector>

#include "fuzz_support.h"
#include "kestrel/chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  if (size == 0) return 0;
  std::vector<std::string_view> fields;
  std::string_view rest = fuzz::as_text(data + 1, size - 1);
  for (size_t nul; fields.size() < 2 && (nul = rest.find('\0')) != std::string_view::npos; rest.remove_prefix(nul + 1))
    fields.push_back(rest.substr(0, nul));
  fields.push_back(rest);
  ChatTemplateOptions options;
  options.add_generation_prompt = (data[0] & 1) != 0;
  options.extra_context_json = fields.size() > 2 ? std::string(fields[2]) : "{}";
  const std::string messages = fields.size() > 1 ? std::string(fields[1]) : "[]";
  fuzz::expect_only_kestrel_errors(
      [&] { (void)apply_chat_template_json(fields[0], messages, options, "<s>", "</s>"); });
  return 0;
}
