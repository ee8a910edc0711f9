// Chat templates rendered by Kestrel's Jinja engine (src/tokenizer/jinja/) with the
// context transformers gives them (see kestrel/chat.h).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/json_depth.h"
#include "kestrel/chat.h"
#include "kestrel/error.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/parser.h"

namespace kestrel {
namespace {

using ojson = nlohmann::ordered_json;

ojson parse_json(std::string_view text, const char* what) {
  constexpr int kMaxDepth = 200;
  if (json_nesting_depth(text) > kMaxDepth)
    throw Error(ErrorCategory::invalid_argument,
                std::string("chat template: ") + what + " nests deeper than " + std::to_string(kMaxDepth));
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCategory::invalid_argument, std::string("chat template: ") + what + " is not valid JSON: " + e.what());
  }
}

std::string render(std::string_view tmpl, ojson messages, const ChatTemplateOptions& options, std::string_view bos,
                   std::string_view eos) {
  if (tmpl.empty()) throw Error(ErrorCategory::unsupported, "chat template: the model has none");
  if (!messages.is_array()) throw Error(ErrorCategory::invalid_argument, "chat template: messages must be a JSON array");
  // transformers' render(messages=..., tools=None, documents=None, add_generation_prompt=...,
  // **special_tokens, **kwargs): the extra context overrides everything but messages.
  ojson context = ojson::object();
  context["messages"] = std::move(messages);
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = options.add_generation_prompt;
  context["bos_token"] = std::string(bos);
  context["eos_token"] = std::string(eos);
  if (!options.extra_context_json.empty()) {
    const ojson extra = parse_json(options.extra_context_json, "extra_context_json");
    if (!extra.is_object())
      throw Error(ErrorCategory::invalid_argument, "chat template: extra_context_json must be a JSON object");
    for (const auto& [key, value] : extra.items())
      if (key != "messages") context[key] = value;
  }
  try {
    const jinja::Body body = jinja::parse(tmpl);
    jinja::Interpreter interpreter{jinja::RenderLimits{}};
    return interpreter.render(body, jinja::from_json(context));
  } catch (const Error& e) {
    throw Error(e.category(), "chat template: " + e.message());
  }
}

ojson messages_json(std::span<const ChatMessage> messages) {
  ojson list = ojson::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return list;
}

std::pair<std::string, std::string> special_texts(const Model& model) {
  const Tokenizer& tok = model.tokenizer();
  return {tok.bos_id() ? tok.token_text(*tok.bos_id()) : std::string(),
          tok.eos_id() ? tok.token_text(*tok.eos_id()) : std::string()};
}

template <typename Fn>
std::string naming_model(const Model& model, Fn&& fn) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(e.category(), model.path().string() + ": " + e.message());
  }
}

}  // namespace

std::string apply_chat_template(std::string_view tmpl, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token) {
  ChatTemplateOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return render(tmpl, messages_json(messages), options, bos_token, eos_token);
}

std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
  const std::pair<std::string, std::string> special = special_texts(model);  // bos, eos
  return naming_model(model, [&] {
    return apply_chat_template(model.chat_template(), messages, add_generation_prompt, special.first, special.second);
  });
}

std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                const ChatTemplateOptions& options) {
  const std::pair<std::string, std::string> special = special_texts(model);  // bos, eos
  return naming_model(model, [&] {
    return render(model.chat_template(), messages_json(messages), options, special.first, special.second);
  });
}

std::string apply_chat_template_json(std::string_view tmpl, std::string_view messages,
                                     const ChatTemplateOptions& options, std::string_view bos_token,
                                     std::string_view eos_token) {
  return render(tmpl, parse_json(messages, "messages"), options, bos_token, eos_token);
}

std::string apply_chat_template_json(const Model& model, std::string_view messages,
                                     const ChatTemplateOptions& options) {
  const std::pair<std::string, std::string> special = special_texts(model);  // bos, eos
  return naming_model(model, [&] {
    return apply_chat_template_json(model.chat_template(), messages, options, special.first, special.second);
  });
}

std::vector<int32_t> encode_chat(const Model& model, std::string_view rendered) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> ids = tok.encode(rendered, /*parse_special=*/true);
  if (tok.add_bos() && tok.bos_id() && rendered.starts_with(tok.token_text(*tok.bos_id())) && !ids.empty())
    ids.erase(ids.begin());  // the BOS the tokenizer added; the text's own BOS follows
  return ids;
}

}  // namespace kestrel
