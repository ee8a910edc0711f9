#include "openai_request.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "api_error.h"
#include "chat_tools.h"

namespace kestrel_server {

namespace {

// Ordered: a chat request's tools and messages reach the template with their keys in the
// client's order, as tojson prints them in Python.
using json = nlohmann::ordered_json;

double number(const json& body, const char* name, double fallback, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) refuse(name, std::string("'") + name + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    refuse(name, std::string("'") + name + "' = " + v->dump() + " is outside [" + json(lo).dump() + ", " +
                     json(hi).dump() + "]");
  return x;
}

int64_t integer(const json& body, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer()) refuse(name, std::string("'") + name + "' must be an integer");
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                        ? INT64_MAX
                        : v->get<int64_t>();
  if (x < lo || x > hi)
    refuse(name, std::string("'") + name + "' = " + v->dump() + " is outside [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) refuse(name, std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

std::vector<int32_t> completion_prompt(const json& body, const ServedModel& served) {
  const json* prompt = field(body, "prompt");
  if (!prompt) refuse("prompt", "'prompt' is required");
  const kestrel::Tokenizer& tokenizer = served.model->tokenizer();
  auto encode = [&](const std::string& text) {
    try {
      return tokenizer.encode(text);
    } catch (const kestrel::Error& e) {
      refuse("prompt", "'prompt' cannot be tokenized: " + e.message());
    }
  };
  if (prompt->is_string()) return encode(prompt->get<std::string>());
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) return encode((*prompt)[0].get<std::string>());
  if (prompt->is_array() && !prompt->empty() && std::all_of(prompt->begin(), prompt->end(), [](const json& t) {
        return t.is_number_integer();
      })) {
    std::vector<int32_t> ids;
    const int vocab = served.model->config().vocab_size;
    for (const json& t : *prompt) {
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= vocab)
        refuse("prompt", "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  }
  refuse("prompt", "'prompt' must be a string, an array of one string or an array of token ids");
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& message, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  const json* content = field(message, "content");
  if (!content) refuse(param, "'" + param + "' is required");
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) refuse(param, "'" + param + "' must be a string or an array of text parts");
  std::string text;
  for (const json& part : *content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      refuse(param, "'" + param + "' parts must be {\"type\": \"text\", \"text\": string}");
    text += part["text"].get<std::string>();
  }
  return text;
}

// A message as the chat template sees it: the object the client sent, so that tool_calls,
// tool_call_id, name or reasoning_content reach the template, with its content flattened
// to text (null stays null for an assistant turn that only calls tools) and tool-call
// arguments sent as a JSON string parsed into an object, as vLLM and llama.cpp's server
// hand them to templates (which index them and apply tojson).
// Whether a value nests deeper than `limit` (stops descending there): copying and
// dumping JSON recurse, so what goes to the template is bounded first.
bool nests_deeper(const json& j, int limit) {
  if (!j.is_structured()) return false;
  if (limit == 0) return true;
  for (const json& e : j)
    if (nests_deeper(e, limit - 1)) return true;
  return false;
}

constexpr int kMaxTemplateNesting = 64;

json template_message(const json& m, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) refuse(param, "'" + param + "' must be an object");
  if (nests_deeper(m, kMaxTemplateNesting))
    refuse(param, "'" + param + "' nests deeper than " + std::to_string(kMaxTemplateNesting) + " levels");
  const json* role = field(m, "role");
  if (!role || !role->is_string()) refuse(param + ".role", "'" + param + ".role' must be a string");
  const std::string r = role->get<std::string>();
  if (r != "system" && r != "user" && r != "assistant" && r != "tool")
    refuse(param + ".role", "'" + param + ".role' = '" + r + "' (expected system, user, assistant or tool)");
  json out = m;
  const json* tool_calls = field(m, "tool_calls");
  const json* content = field(m, "content");
  if (r == "assistant" && tool_calls && (!content || content->is_null())) {
    out["content"] = nullptr;
  } else {
    out["content"] = message_content(m, i);
  }
  if (tool_calls) {
    if (!tool_calls->is_array()) refuse(param + ".tool_calls", "'" + param + ".tool_calls' must be an array");
    for (json& call : out["tool_calls"]) {
      if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
        refuse(param + ".tool_calls", "'" + param + ".tool_calls' entries must be {\"function\": {...}} objects");
      json& arguments = call["function"]["arguments"];
      if (arguments.is_string()) {
        json parsed = json::parse(arguments.get<std::string>(), nullptr, /*allow_exceptions=*/false);
        if (parsed.is_object()) arguments = std::move(parsed);
      }
    }
  }
  return out;
}

// The extra template variables of a chat request: its tools (unless tool_choice is
// "none") and every key of its `chat_template_kwargs` (enable_thinking, date_string, ...),
// as vLLM and llama.cpp's server accept them.
std::string template_context(const json& body, const ChatTools& tools) {
  json context = json::object();
  if (!tools.template_tools.is_null()) {
    if (nests_deeper(tools.template_tools, kMaxTemplateNesting))
      refuse("tools", "'tools' nests deeper than " + std::to_string(kMaxTemplateNesting) + " levels");
    context["tools"] = tools.template_tools;
  }
  if (const json* kwargs = field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) refuse("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    if (nests_deeper(*kwargs, kMaxTemplateNesting))
      refuse("chat_template_kwargs",
             "'chat_template_kwargs' nests deeper than " + std::to_string(kMaxTemplateNesting) + " levels");
    for (const auto& [key, value] : kwargs->items())
      if (key != "messages") context[key] = value;
  }
  return context.dump();
}

// The chat prompt's tokens; sets how the reply is parsed (a template that opens <think>
// in the generation prompt makes the reply start inside the thought).
std::vector<int32_t> chat_prompt(const json& body, const ServedModel& served, const ChatTools& tools,
                                 kestrel::ChatOutputFormat& output) {
  const json* messages = field(body, "messages");
  if (!messages) refuse("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty()) refuse("messages", "'messages' must be a non-empty array");
  json history = json::array();
  for (size_t i = 0; i < messages->size(); ++i) history.push_back(template_message((*messages)[i], i));
  kestrel::ChatTemplateOptions options;
  options.extra_context_json = template_context(body, tools);
  try {
    const std::string rendered = kestrel::apply_chat_template_json(*served.model, history.dump(), options);
    output = tools.output;
    output.thinking_open = output.reasoning && kestrel::prompt_opens_thinking(rendered, output.thought_markers);
    return kestrel::encode_chat(*served.model, rendered);
  } catch (const kestrel::Error& e) {
    throw ApiError(400, "messages cannot be rendered with the model's chat template: " + e.message(), "messages");
  }
}

std::vector<std::string> stop_strings(const json& body) {
  const json* stop = field(body, "stop");
  if (!stop) return {};
  if (stop->is_string()) return {stop->get<std::string>()};
  if (!stop->is_array() || stop->size() > 4) refuse("stop", "'stop' must be a string or an array of up to 4 strings");
  std::vector<std::string> out;
  for (const json& s : *stop) {
    if (!s.is_string() || s.get<std::string>().empty()) refuse("stop", "'stop' entries must be non-empty strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

// Constrained output: OpenAI's response_format ({"type": "text" | "json_object" |
// "json_schema", "json_schema": {"schema": {...}}}) or llama.cpp's "grammar" (GBNF text).
// The grammar or schema itself is checked when the request is submitted (400 naming it).
void constraint(const json& body, kestrel::ConstraintOptions& out) {
  const json* format = field(body, "response_format");
  const json* grammar = field(body, "grammar");
  if (format && grammar) refuse("grammar", "'grammar' and 'response_format' cannot both be given");
  if (grammar) {
    if (!grammar->is_string()) refuse("grammar", "'grammar' must be a string (GBNF)");
    out.grammar = grammar->get<std::string>();
    return;
  }
  if (!format) return;
  if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string())
    refuse("response_format", "'response_format' must be an object with a string 'type'");
  const std::string type = (*format)["type"].get<std::string>();
  if (type == "text") return;
  if (type == "json_object") {
    out.json_schema = R"({"type": "object"})";
    return;
  }
  if (type != "json_schema")
    refuse("response_format.type", "'response_format.type' = '" + type + "' (expected text, json_object or json_schema)");
  const json* spec = field(*format, "json_schema");
  if (!spec || !spec->is_object() || !spec->contains("schema") || !(*spec)["schema"].is_object())
    refuse("response_format.json_schema", "'response_format.json_schema.schema' must be a JSON Schema object");
  out.json_schema = (*spec)["schema"].dump();
}

// Log-probabilities. Completions: "logprobs": n in [0, 5] (the n most likely tokens at each
// position; 0: the chosen token's only). Chat: "logprobs": true, "top_logprobs": n in
// [0, 20] (only with logprobs true).
void logprobs(const json& body, bool chat, kestrel::OutputOptions& out) {
  if (chat) {
    out.logprobs = boolean(body, "logprobs", false);
    out.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 0, kestrel::kMaxTopLogprobs));
    if (field(body, "top_logprobs") && !out.logprobs)
      refuse("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    return;
  }
  if (field(body, "top_logprobs"))
    refuse("top_logprobs", "'top_logprobs' is a chat parameter; /v1/completions takes 'logprobs': an integer in [0, 5]");
  const json* v = field(body, "logprobs");
  if (!v) return;
  if (v->is_boolean()) refuse("logprobs", "'logprobs' must be an integer in [0, 5] for /v1/completions");
  out.logprobs = true;
  out.top_logprobs = static_cast<int>(integer(body, "logprobs", 0, 0, 5));
}

// Decoding beyond sampling, as extensions (the openai client's extra_body):
//   "use_beam_search": true (vLLM's name), "best_of": beams (default max(n, 4)),
//   "length_penalty", "early_stopping" (true, false or "never"): n best hypotheses;
//   "speculative": {"method": "prompt-lookup" | "none", "num_draft_tokens", "ngram_min",
//   "ngram_max"}: the same output, fewer model steps when drafts hold.
void beam_and_speculative(const json& body, kestrel::GenerationRequest& g) {
  if (boolean(body, "use_beam_search", false)) {
    if (g.sampling.temperature != 0)
      refuse("use_beam_search", "'use_beam_search' needs temperature 0 (beam search does not sample)");
    if (g.output.logprobs) refuse("logprobs", "'logprobs' does not combine with 'use_beam_search'");
    const int n = g.num_return_sequences;
    g.beam.num_beams = static_cast<int>(integer(body, "best_of", std::max(n, 4), std::max(n, 2), 64));
    g.beam.length_penalty = static_cast<float>(number(body, "length_penalty", 1.0, -10.0, 10.0));
    if (const json* early = field(body, "early_stopping")) {
      if (early->is_boolean())
        g.beam.early_stopping = early->get<bool>() ? kestrel::EarlyStopping::enough : kestrel::EarlyStopping::heuristic;
      else if (early->is_string() && early->get<std::string>() == "never")
        g.beam.early_stopping = kestrel::EarlyStopping::never;
      else
        refuse("early_stopping", "'early_stopping' must be true, false or \"never\"");
    }
  }
  const json* spec = field(body, "speculative");
  if (!spec) return;
  if (!spec->is_object()) refuse("speculative", "'speculative' must be an object");
  const json* method = field(*spec, "method");
  if (!method || !method->is_string()) refuse("speculative.method", "'speculative.method' must be a string");
  try {
    g.speculative.method = kestrel::parse_speculative_method(method->get<std::string>(), "speculative.method");
  } catch (const kestrel::Error& e) {
    refuse("speculative.method", e.message());
  }
  g.speculative.num_draft_tokens = static_cast<int>(integer(*spec, "num_draft_tokens", 4, 1, 32));
  g.speculative.ngram_min = static_cast<int>(integer(*spec, "ngram_min", 1, 1, 16));
  g.speculative.ngram_max = static_cast<int>(integer(*spec, "ngram_max", 3, 1, 16));
}

}  // namespace

ApiRequest parse_request(std::string_view text, Endpoint endpoint, const ServedModel& served) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("malformed JSON body: ") + e.what(), "", "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_json");
  const bool chat = endpoint == Endpoint::chat_completions;

  if (const json* model = field(body, "model")) {
    if (!model->is_string()) refuse("model", "'model' must be a string");
    if (model->get<std::string>() != served.id)
      throw ApiError(400, "The model '" + model->get<std::string>() + "' does not exist; this server serves '" +
                              served.id + "'",
                     "model", "model_not_found");
  }
  ApiRequest request;
  request.endpoint = endpoint;
  request.stream = boolean(body, "stream", false);
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) refuse("stream_options", "'stream_options' must be an object");
    request.include_usage = boolean(*options, "include_usage", false);
  }
  kestrel::GenerationRequest& g = request.generation;
  ChatTools tools;
  if (chat) {
    tools = chat_tools(body, served.output_format);
    request.chat_output.emplace();
    g.prompt_ids = chat_prompt(body, served, tools, *request.chat_output);
  } else {
    g.prompt_ids = completion_prompt(body, served);
  }
  const int prompt = static_cast<int>(g.prompt_ids.size());
  if (prompt >= served.context)
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(served.context) +
                       " tokens, but the prompt has " + std::to_string(prompt) + " tokens",
                   chat ? "messages" : "prompt", "context_length_exceeded");
  const int room = served.context - prompt;
  const char* max_name = chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const int64_t max_tokens = integer(body, max_name, chat ? room : 16, 1, INT32_MAX);
  if (max_tokens > room)
    throw ApiError(400,
                   "'" + std::string(max_name) + "' = " + std::to_string(max_tokens) + " is more than the " +
                       std::to_string(room) + " tokens left in the context of " + std::to_string(served.context) +
                       " after the prompt's " + std::to_string(prompt),
                   max_name, "context_length_exceeded");
  g.stop.max_new_tokens = static_cast<int>(max_tokens);
  g.stop.stop_strings = stop_strings(body);
  g.stop.stop_at_eos = !boolean(body, "ignore_eos", false);

  kestrel::SamplingOptions& s = g.sampling;
  s.temperature = static_cast<float>(number(body, "temperature", 1.0, 0.0, 2.0));
  s.top_p = static_cast<float>(number(body, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0) refuse("top_p", "'top_p' must be > 0");
  const int64_t top_k = integer(body, "top_k", 0, -1, INT32_MAX);
  s.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);  // -1: off, as vLLM takes it
  s.min_p = static_cast<float>(number(body, "min_p", 0.0, 0.0, 1.0));
  s.presence_penalty = static_cast<float>(number(body, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = static_cast<float>(number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  s.repetition_penalty = static_cast<float>(number(body, "repetition_penalty", 1.0, 0.01, 100.0));
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) refuse("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  } else {
    s.seed = std::random_device{}();
  }
  constraint(body, g.constraint);
  if (!tools.grammar.empty()) {
    if (!g.constraint.grammar.empty() || !g.constraint.json_schema.empty())
      refuse("tool_choice", "'tool_choice' = required or a named function cannot be combined with 'response_format' "
                            "or 'grammar'");
    // A prompt that opened <think> (QwQ, R1 distills) lets the reply finish its thought first.
    g.constraint.grammar = request.chat_output->thinking_open ? tools.grammar_after_thought()
                                                              : tools.grammar;
  }
  logprobs(body, chat, g.output);
  g.num_return_sequences = static_cast<int>(integer(body, "n", 1, 1, served.max_sequences));
  beam_and_speculative(body, g);
  // n identical greedy completions are one completion repeated: ask for sampling (or beams).
  if (g.num_return_sequences > 1 && s.temperature == 0 && g.beam.num_beams == 1)
    refuse("n", "'n' > 1 needs temperature > 0 or use_beam_search (greedy completions would all be the same)");
  return request;
}

}  // namespace kestrel_server
