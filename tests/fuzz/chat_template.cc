// Fuzz target: chat-template rendering (the Jinja engine through apply_chat_template with
// role / content messages) for any template text and conversation; fuzz_jinja adds JSON
// messages and extra context.
//   input[0]: add_generation_prompt (bit 0)
//   the rest, split at NUL bytes: template, bos_token (also the eos_token), then role / content pairs
#include <vector>

#include "fuzz_support.h"
#include "kestrel/chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  if (size == 0) return 0;
  const bool add_generation_prompt = (data[0] & 1) != 0;
  std::vector<std::string_view> fields;
  std::string_view rest = fuzz::as_text(data + 1, size - 1);
  for (size_t nul; (nul = rest.find('\0')) != std::string_view::npos; rest.remove_prefix(nul + 1)) {
    fields.push_back(rest.substr(0, nul));
  }
  fields.push_back(rest);
  const std::string_view chat_template = fields[0];
  const std::string_view bos = fields.size() > 1 ? fields[1] : std::string_view();
  std::vector<ChatMessage> messages;
  for (size_t i = 2; i < fields.size(); i += 2) {
    messages.push_back({std::string(fields[i]), i + 1 < fields.size() ? std::string(fields[i + 1]) : ""});
  }
  fuzz::expect_only_kestrel_errors(
      [&] { (void)apply_chat_template(chat_template, messages, add_generation_prompt, bos, bos); });
  return 0;
}
