// Chat templates by family (see kestrel/chat.h): the template's text decides the family
// and supplies its default system message; the rendering is written out here.
#include <algorithm>
#include <optional>

#include "kestrel/chat.h"
#include "kestrel/error.h"

namespace kestrel {
namespace {

// Python's str.isspace for the characters a message can realistically hold: Jinja's
// `trim` filter is Python's str.strip().
bool is_space_at(std::string_view s, size_t i, size_t* width) {
  const auto c = static_cast<unsigned char>(s[i]);
  *width = 1;
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return true;
  static constexpr std::string_view kWide[] = {
      "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf",
      "\xe2\x81\x9f", "\xe3\x80\x80"};
  for (std::string_view w : kWide)
    if (s.substr(i, w.size()) == w) return *width = w.size(), true;
  if (s.substr(i, 2) == "\xe2\x80" && i + 2 < s.size()) {  // U+2000..U+200A
    const auto c2 = static_cast<unsigned char>(s[i + 2]);
    if (c2 >= 0x80 && c2 <= 0x8a) return *width = 3, true;
  }
  return false;
}

std::string_view trim(std::string_view s) {
  size_t width = 0;
  while (!s.empty() && is_space_at(s, 0, &width)) s.remove_prefix(width);
  // From the back: find the last non-space character by scanning forward.
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    if (is_space_at(s, i, &width)) {
      i += width;
    } else {
      size_t step = 1;
      while (i + step < s.size() && (static_cast<unsigned char>(s[i + step]) & 0xc0) == 0x80) ++step;
      i += step;
      end = i;
    }
  }
  return s.substr(0, end);
}

// The body of a Jinja string literal with its escapes resolved (\n, \t, \\, \', \").
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
  }
  return out;
}

// A default system message written literally in a ChatML template:
// '<|im_start|>system\n<text><|im_end|>' with no expression inside the text.
std::optional<std::string> chatml_default_system(std::string_view tmpl) {
  constexpr std::string_view kStart = "<|im_start|>system";
  constexpr std::string_view kEnd = "<|im_end|>";
  for (size_t at = tmpl.find(kStart); at != std::string_view::npos; at = tmpl.find(kStart, at + 1)) {
    std::string_view rest = tmpl.substr(at + kStart.size());
    if (rest.starts_with("\n")) {
      rest.remove_prefix(1);
    } else if (rest.starts_with("\\n")) {
      rest.remove_prefix(2);
    } else {
      continue;
    }
    const size_t end = rest.find(kEnd);
    if (end == std::string_view::npos) continue;
    std::string_view text = rest.substr(0, end);
    if (text.find_first_of("'\"{}") != std::string_view::npos) continue;  // not one literal
    return unescape(text);
  }
  return std::nullopt;
}

std::string render_chatml(std::string_view tmpl, std::span<const ChatMessage> messages,
                          bool add_generation_prompt) {
  std::string out;
  if (!messages.empty() && messages.front().role != "system")
    if (std::optional<std::string> system = chatml_default_system(tmpl))
      out += "<|im_start|>system\n" + *system + "<|im_end|>\n";
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt,
                          std::string_view bos_token) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos_token;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n";
    out += trim(messages[i].content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// What the templates below raise (Jinja's raise_exception), or their error on a missing
// first message.
[[noreturn]] void template_error(const std::string& what) {
  throw Error(ErrorCategory::invalid_argument, "chat template: " + what);
}

constexpr const char* kAlternate = "Conversation roles must alternate user/assistant/user/assistant/...";

// The templates' check, message by message: user at even positions, anything else at odd.
void check_alternation(std::span<const ChatMessage> messages, size_t i) {
  if ((messages[i].role == "user") != (i % 2 == 0)) template_error(kAlternate);
}

const ChatMessage& first_message(std::span<const ChatMessage> messages) {
  if (messages.empty()) template_error("the template reads messages[0] and there are no messages");
  return messages.front();
}

// Llama-2-chat (meta-llama/Llama-2-*-chat-hf): an optional system message folded into the
// first turn as <<SYS>>; "<s>[INST] {user, stripped} [/INST]" and " {assistant, stripped} </s>";
// other roles render nothing; no generation prompt (the text ends with [/INST]).
std::string render_llama2(std::span<const ChatMessage> messages, std::string_view bos, std::string_view eos) {
  std::optional<std::string> system;
  if (first_message(messages).role == "system") {
    system = messages.front().content;
    messages = messages.subspan(1);
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    check_alternation(messages, i);
    std::string content = messages[i].content;
    if (i == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content;
    if (messages[i].role == "user") {
      out.append(bos).append("[INST] ").append(trim(content)).append(" [/INST]");
    } else if (messages[i].role == "assistant") {
      out.append(" ").append(trim(content)).append(" ").append(eos);
    }
  }
  return out;
}

// Mistral-7B-Instruct v0.1 / v0.2: "<s>", then "[INST] {user} [/INST]" and "{assistant}</s>",
// nothing trimmed; only user and assistant roles; no generation prompt.
std::string render_mistral(std::span<const ChatMessage> messages, std::string_view bos, std::string_view eos) {
  std::string out(bos);
  for (size_t i = 0; i < messages.size(); ++i) {
    check_alternation(messages, i);
    if (messages[i].role == "user") {
      out.append("[INST] ").append(messages[i].content).append(" [/INST]");
    } else if (messages[i].role == "assistant") {
      out.append(messages[i].content).append(eos);
    } else {
      template_error("Only user and assistant roles are supported!");
    }
  }
  return out;
}

// Gemma 1 / 2 (-it): no system role; "<start_of_turn>{user|model}\n{content, trimmed}
// <end_of_turn>\n" per message; "<start_of_turn>model\n" as the generation prompt. Gemma 2's
// template writes the BOS, Gemma 1's leaves it to the tokenizer.
std::string render_gemma(std::string_view tmpl, std::span<const ChatMessage> messages,
                         bool add_generation_prompt, std::string_view bos) {
  std::string out(tmpl.starts_with("{{ bos_token }}") ? bos : "");
  if (first_message(messages).role == "system") template_error("System role not supported");
  for (size_t i = 0; i < messages.size(); ++i) {
    check_alternation(messages, i);
    const std::string& role = messages[i].role == "assistant" ? std::string("model") : messages[i].role;
    out.append("<start_of_turn>").append(role).append("\n").append(trim(messages[i].content)).append("<end_of_turn>\n");
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

bool contains_all(std::string_view tmpl, std::initializer_list<std::string_view> parts) {
  return std::all_of(parts.begin(), parts.end(), [&](std::string_view p) { return tmpl.find(p) != std::string_view::npos; });
}

std::string opening(std::string_view tmpl) {
  constexpr size_t kShown = 60;
  std::string shown(tmpl.substr(0, kShown));
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  return "'" + shown + (tmpl.size() > kShown ? "...'" : "'");
}

}  // namespace

std::string apply_chat_template(std::string_view tmpl, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token) {
  if (tmpl.empty()) throw Error(ErrorCategory::unsupported, "chat template: the model has none");
  if (tmpl.find("<|im_start|>") != std::string_view::npos)
    return render_chatml(tmpl, messages, add_generation_prompt);
  if (tmpl.find("<|start_header_id|>") != std::string_view::npos) {
    if (tmpl.find("Cutting Knowledge Date") != std::string_view::npos)
      throw Error(ErrorCategory::unsupported,
                  "chat template: the Llama 3.1+ template (tools, dates) is not supported yet: " + opening(tmpl));
    return render_llama3(messages, add_generation_prompt, bos_token);
  }
  // The other families by the expressions that render a turn, so that a variant that
  // renders differently (Mistral v3's " [INST] ", Gemma 3's system turn) is not taken for them.
  if (contains_all(tmpl, {"bos_token + '[INST] ' + content.strip() + ' [/INST]'", "<<SYS>>",
                          "content.strip() + ' ' + eos_token", "set system_message = false"}))
    return render_llama2(messages, bos_token, eos_token);
  if (tmpl.starts_with("{{ bos_token }}") &&
      contains_all(tmpl, {"{{ '[INST] ' + message['content'] + ' [/INST]' }}", "{{ message['content'] + eos_token}}",
                          "'Only user and assistant roles are supported!'"}))
    return render_mistral(messages, bos_token, eos_token);
  if (contains_all(tmpl, {"'<start_of_turn>' + role + '", "message['content'] | trim + '<end_of_turn>",
                          "raise_exception('System role not supported')"}))
    return render_gemma(tmpl, messages, add_generation_prompt, bos_token);
  throw Error(ErrorCategory::unsupported,
              "chat template: not a family Kestrel knows (ChatML, Llama 2, Llama 3, Mistral v0.1-0.2, "
              "Gemma 1-2): " + opening(tmpl));
}

std::string apply_chat_template(const Model& model, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
  const Tokenizer& tok = model.tokenizer();
  std::string bos = tok.bos_id() ? tok.token_text(*tok.bos_id()) : std::string();
  std::string eos = tok.eos_id() ? tok.token_text(*tok.eos_id()) : std::string();
  try {
    return apply_chat_template(model.chat_template(), messages, add_generation_prompt, bos, eos);
  } catch (const Error& e) {
    throw Error(e.category(), model.path().string() + ": " + e.message());
  }
}

std::vector<int32_t> encode_chat(const Model& model, std::string_view rendered) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> ids = tok.encode(rendered, /*parse_special=*/true);
  if (tok.add_bos() && tok.bos_id() && rendered.starts_with(tok.token_text(*tok.bos_id())) && !ids.empty())
    ids.erase(ids.begin());  // the BOS the tokenizer added; the text's own BOS follows
  return ids;
}

}  // namespace kestrel
