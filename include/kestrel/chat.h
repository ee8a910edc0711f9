// kestrel/chat.h: conversations rendered with a model's chat template.
//
// Kestrel runs the template with its own Jinja engine (src/tokenizer/jinja/), the way
// transformers' apply_chat_template runs it with jinja2: an immutable sandbox with
// trim_blocks and lstrip_blocks, the loop controls ({% break %} / {% continue %}),
// transformers' {% generation %} tag, its tojson filter (json.dumps with ensure_ascii off
// and the indent / separators / sort_keys options), and the globals raise_exception(msg)
// and strftime_now(format) (the local date and time). The template sees:
//   messages               the conversation (a list of message objects)
//   add_generation_prompt  bool
//   bos_token, eos_token   the texts of the model's BOS / EOS tokens
//   tools, documents       none, unless the extra context gives them
//   ...                    every key of ChatTemplateOptions::extra_context_json
//                          ("tools", "enable_thinking", "date_string", ...)
// The output is byte for byte what transformers renders; tests/fixtures/chat-templates/
// holds the 50 real templates (Llama 2 / 3 / 3.1-3.3, Qwen 2.5 / 3, Mistral, Gemma, Phi,
// DeepSeek, Granite, Hermes, Command R, gpt-oss, ...) checked against jinja2 3.1 case by case.
// Known differences: upper / lower / title map case for Latin-1, Greek and Cyrillic
// letters only; str.format and `%` take the common conversions only (%s %r %d %i %f, {}
// without specs); a generator (map / select / reject) can be iterated more than once;
// printing a method or range() shows a placeholder, not Python's repr; recursive loops,
// includes and template inheritance are refused (Error(unsupported)).
//
// The other direction, the model's reply taken apart into content, reasoning and tool
// calls in the syntax the template teaches, is kestrel/chat_output.h.
//
// Errors: what the template raises (raise_exception, a missing variable used where a
// value is needed, a type error) becomes Error(invalid_argument) "chat template: line N:
// <jinja2's message>"; a syntax error names its line and what was expected; a template
// that runs away (more than 32 MiB of text, 2 million steps, 48 nested macro calls, 2000
// nested statements and expressions under evaluation) throws Error(limit).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/model.h"

namespace kestrel {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

// How a conversation is rendered beyond its messages.
struct ChatTemplateOptions {
  // End with the header of the assistant's reply.
  bool add_generation_prompt = true;
  // A JSON object (text) whose keys become template variables, as the keyword arguments
  // of transformers' apply_chat_template: {"tools": [...], "enable_thinking": false,
  // "date_string": "26 Jul 2024", ...}. Empty: none.
  std::string extra_context_json;
};

// The conversation as the model's chat template renders it (Model::chat_template());
// with `add_generation_prompt`, ends with the header of the assistant's reply. Throws
// Error(unsupported) when the model has no template, and the errors above.
std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true);
// The same for a template given as text; `bos_token` / `eos_token` are the texts Jinja's
// bos_token / eos_token hold.
std::string apply_chat_template(std::string_view chat_template, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true, std::string_view bos_token = "",
                                std::string_view eos_token = "");

// The same with the extra template variables of `options` (role / content messages).
std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                const ChatTemplateOptions& options);

// The same with messages given as a JSON array of message objects (text), so that fields
// beyond role and content reach the template: "tool_calls", "tool_call_id", "name",
// "reasoning_content", content given as a list of parts, ... Error(invalid_argument) when
// `messages` is not a JSON array or the extra context not a JSON object.
std::string apply_chat_template_json(const Model& model, std::string_view messages,
                                     const ChatTemplateOptions& options = {});
std::string apply_chat_template_json(std::string_view chat_template, std::string_view messages,
                                     const ChatTemplateOptions& options = {}, std::string_view bos_token = "",
                                     std::string_view eos_token = "");

// The token ids of a rendered conversation: special tokens parsed, and the tokenizer's
// BOS added (when it adds one) unless the text already starts with it, so a template that
// writes the BOS itself does not get a second one (as transformers does).
std::vector<int32_t> encode_chat(const Model& model, std::string_view rendered);

}  // namespace kestrel
