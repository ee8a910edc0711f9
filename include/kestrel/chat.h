// kestrel/chat.h: conversations rendered with a model's chat template.
//
// Kestrel has no Jinja engine. It recognizes the family of a model's template and
// reproduces that family's output exactly (checked against jinja2 on the real templates):
//   ChatML (the template mentions <|im_start|>; SmolLM2, Qwen without tools):
//     "<|im_start|>{role}\n{content}<|im_end|>\n" per message, and
//     "<|im_start|>assistant\n" as the generation prompt. A default system message
//     written in the template (SmolLM2: "You are a helpful AI assistant named SmolLM,
//     trained by Hugging Face") comes first when the first message is not a system one.
//   Llama 2 chat: an optional system message as "<<SYS>>\n{system}\n<</SYS>>\n\n" before the
//     first user text; "{bos}[INST] {user, trimmed} [/INST]" and " {assistant, trimmed} {eos}";
//     no generation prompt (the text ends with [/INST]).
//   Mistral-7B-Instruct v0.1 / v0.2: "{bos}", then "[INST] {user} [/INST]" and "{assistant}{eos}";
//     user and assistant roles only.
//   Gemma 1 / 2 (-it): "<start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n" per
//     message (Gemma 2's template puts the BOS first), "<start_of_turn>model\n" as the
//     generation prompt; no system role.
//   These three raise what their templates raise (roles that do not alternate user /
//   assistant, a system message for Gemma) as Error(invalid_argument).
//   Llama 3 (the template mentions <|start_header_id|>):
//     "<|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>" per
//     message, the BOS token text before the first, and
//     "<|start_header_id|>assistant<|end_header_id|>\n\n" as the generation prompt. The
//     Llama 3.1+ template (tools, "Cutting Knowledge Date") is not supported yet.
// Any other template throws Error(unsupported) quoting its first characters.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/model.h"

namespace kestrel {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// The conversation as the model's chat template renders it (Model::chat_template());
// with `add_generation_prompt`, ends with the header of the assistant's reply. Throws
// Error(unsupported) when the model has no template or one of an unknown family.
std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true);
// The same for a template given as text; `bos_token` / `eos_token` are the texts Jinja's
// bos_token / eos_token hold.
std::string apply_chat_template(std::string_view chat_template, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true, std::string_view bos_token = "",
                                std::string_view eos_token = "");

// The token ids of a rendered conversation: special tokens parsed, and the tokenizer's
// BOS added (when it adds one) unless the text already starts with it, so a template that
// writes the BOS itself does not get a second one (as transformers does).
std::vector<int32_t> encode_chat(const Model& model, std::string_view rendered);

}  // namespace kestrel
