#include "kestrel/chat_output.h"

#include <cctype>
#include <random>

#include "chat/tool_call_syntax.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {

using chat::ParsedCall;

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kMistralThinkOpen = "[THINK]";
constexpr std::string_view kMistralThinkClose = "[/THINK]";

std::string_view thought_open(ThoughtMarkers m) { return m == ThoughtMarkers::mistral ? kMistralThinkOpen : kThinkOpen; }
std::string_view thought_close(ThoughtMarkers m) {
  return m == ThoughtMarkers::mistral ? kMistralThinkClose : kThinkClose;
}
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kEndOfMessage = "<|eom_id|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kGraniteCalls = "<|tool_call|>";
// DeepSeek's markers are written with U+FF5C (fullwidth vertical line) and U+2581 (lower
// one eighth block); "<｜tool▁calls｜>" is the short opener llama.cpp also accepts.
constexpr std::string_view kDeepSeekCalls = "<\uff5ctool\u2581calls\u2581begin\uff5c>";
constexpr std::string_view kDeepSeekCallsShort = "<\uff5ctool\u2581calls\uff5c>";
constexpr std::string_view kDeepSeekCallsEnd = "<\uff5ctool\u2581calls\u2581end\uff5c>";
constexpr std::string_view kDeepSeekCall = "<\uff5ctool\u2581call\u2581begin\uff5c>";
constexpr std::string_view kDeepSeekCallEnd = "<\uff5ctool\u2581call\u2581end\uff5c>";

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view ltrim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}
std::string_view rtrim(std::string_view s) {
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}
std::string_view trim(std::string_view s) { return rtrim(ltrim(s)); }

// The length of the longest proper prefix of `marker` that `text` ends with: bytes that
// may still become the marker, held back while streaming.
size_t partial_marker(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

// One reading of the reply so far. With `final` false it holds only what is settled: every
// later reading of a longer text extends each field (content and reasoning as prefixes,
// calls as a prefix of the list), which is what lets the stream send differences.
struct Scan {
  std::string content;
  std::string reasoning;
  std::vector<ParsedCall> calls;
};

class Scanner {
 public:
  Scanner(const ChatOutputFormat& format, bool final) : f_(format), final_(final) {}

  Scan run(std::string_view text) {
    const std::string_view rest = reasoning(text);
    switch (f_.tool_calls) {
      case ToolCallFormat::none: raw_ += rest; break;
      case ToolCallFormat::hermes: hermes(rest); break;
      case ToolCallFormat::llama3: llama3(rest); break;
      case ToolCallFormat::mistral: mistral(rest); break;
      case ToolCallFormat::granite: call_array(rest, kGraniteCalls); break;
      case ToolCallFormat::deepseek: deepseek(rest); break;
    }
    if (!thought_ && f_.tool_calls == ToolCallFormat::none) {
      out_.content = std::move(raw_);
    } else {
      // Settled content never ends in whitespace while streaming: the end may trim it.
      out_.content = final_ ? trim(raw_) : rtrim(ltrim(raw_));
    }
    return std::move(out_);
  }

 private:
  // Takes a leading thought out as reasoning; returns the text after it.
  std::string_view reasoning(std::string_view text) {
    if (!f_.reasoning) return text;
    const std::string_view open = thought_open(f_.thought_markers), close_marker = thought_close(f_.thought_markers);
    size_t body = 0;
    if (!f_.thinking_open) {
      const std::string_view lead = ltrim(text);
      if (lead.substr(0, open.size()) == open) {
        body = text.size() - lead.size() + open.size();
      } else if (!final_ && open.substr(0, lead.size()) == lead) {
        return {};  // may still become the opener: hold it all
      } else {
        return text;
      }
    }
    thought_ = true;
    const size_t close = text.find(close_marker, body);
    if (close != std::string_view::npos) {
      out_.reasoning = trim(text.substr(body, close - body));
      return text.substr(close + close_marker.size());
    }
    std::string_view thought = text.substr(body);
    if (!final_) thought = rtrim(thought.substr(0, thought.size() - partial_marker(thought, close_marker)));
    out_.reasoning = ltrim(rtrim(thought));
    return {};
  }

  bool room_for(size_t calls) const {
    return f_.max_tool_calls <= 0 || out_.calls.size() + calls <= static_cast<size_t>(f_.max_tool_calls);
  }

  // Text that may end in the start of `marker`: all of it when final, else up to that start.
  void plain(std::string_view text, std::string_view marker) {
    raw_ += final_ ? text : text.substr(0, text.size() - partial_marker(text, marker));
  }

  // <tool_call>{...}</tool_call>, any number, content between.
  void hermes(std::string_view r) {
    size_t pos = 0;
    while (true) {
      const size_t open = r.find(kHermesOpen, pos);
      if (open == std::string_view::npos) return plain(r.substr(pos), kHermesOpen);
      raw_ += r.substr(pos, open - pos);
      const size_t body = open + kHermesOpen.size();
      const size_t close = r.find(kHermesClose, body);
      if (close == std::string_view::npos && !final_) return;  // an unfinished call: held
      const size_t end = close == std::string_view::npos ? r.size() : close + kHermesClose.size();
      const std::string_view inner = r.substr(body, (close == std::string_view::npos ? r.size() : close) - body);
      std::optional<ParsedCall> call = chat::json_call(inner, "arguments");
      if (call && room_for(1))
        out_.calls.push_back(std::move(*call));
      else
        raw_ += r.substr(open, end - open);
      if (close == std::string_view::npos) return;
      pos = end;
    }
  }

  // The whole reply one JSON call, or text then <|python_tag|> and one call.
  void llama3(std::string_view r) {
    const size_t tag = r.find(kPythonTag);
    if (tag == std::string_view::npos) {
      const std::string_view lead = ltrim(r);
      if (!final_) {
        if (!lead.empty() && chat::may_start_json_call(lead)) return;  // may be a call: held
        return plain(r, kPythonTag);
      }
      std::optional<std::vector<ParsedCall>> calls = chat::json_calls_separated(r, "parameters", "arguments");
      if (calls && room_for(calls->size())) {
        for (ParsedCall& call : *calls) out_.calls.push_back(std::move(call));
      } else {
        raw_ += r;
      }
      return;
    }
    raw_ += r.substr(0, tag);
    if (!final_) return;  // the call ends with the reply
    std::string_view body = rtrim(r.substr(tag + kPythonTag.size()));
    if (body.size() >= kEndOfMessage.size() && body.substr(body.size() - kEndOfMessage.size()) == kEndOfMessage)
      body = rtrim(body.substr(0, body.size() - kEndOfMessage.size()));
    std::optional<ParsedCall> call = chat::json_call(body, "parameters", "arguments");
    if (!call) call = chat::python_builtin_call(body);
    if (!call && !trim(body).empty()) {
      // Code after the tag is a call of the code interpreter, as Llama 3.1's prompt
      // format describes it.
      call = ParsedCall{"", "python", ""};
      call->arguments = std::string("{\"code\":") + quote(trim(body)) + "}";
    }
    if (call && room_for(1))
      out_.calls.push_back(std::move(*call));
    else
      raw_ += r.substr(tag);
  }

  // MARKER[{...}, ...]: content before, the array to the end of the reply.
  void call_array(std::string_view r, std::string_view marker) {
    const size_t at = r.find(marker);
    if (at == std::string_view::npos) return plain(r, marker);
    raw_ += r.substr(0, at);
    if (!final_) return;  // the array ends with the reply
    std::optional<std::vector<ParsedCall>> calls = chat::json_call_array(r.substr(at + marker.size()));
    if (calls)
      take_all(std::move(*calls), r.substr(at));
    else
      raw_ += r.substr(at);
  }

  // [TOOL_CALLS] then either a JSON array of calls (Mistral Nemo, v0.3) or, once per call,
  // name[ARGS]{...} / name[CALL_ID]id[ARGS]{...} (Mistral Small 3.2, Devstral, Magistral):
  // content before, the calls to the end of the reply.
  void mistral(std::string_view r) {
    const size_t at = r.find(kMistralCalls);
    if (at == std::string_view::npos || ltrim(r.substr(at + kMistralCalls.size())).substr(0, 1) == "[")
      return call_array(r, kMistralCalls);
    raw_ += r.substr(0, at);
    if (!final_) return;  // the calls end with the reply
    std::vector<ParsedCall> calls;
    for (size_t pos = at; pos < r.size();) {
      const size_t body = pos + kMistralCalls.size();
      const size_t next = std::min(r.find(kMistralCalls, body), r.size());
      std::optional<ParsedCall> call = chat::mistral_named_call(r.substr(body, next - body));
      if (!call) return void(raw_ += r.substr(at));
      calls.push_back(std::move(*call));
      pos = next;
    }
    take_all(std::move(calls), r.substr(at));
  }

  // <｜tool▁calls▁begin｜> (<｜tool▁call▁begin｜>call<｜tool▁call▁end｜>)+ <｜tool▁calls▁end｜>:
  // DeepSeek R1 and V3.1. Content before and after; the block is released once it closes
  // or the reply ends.
  void deepseek(std::string_view r) {
    size_t at = r.find(kDeepSeekCalls), opener = kDeepSeekCalls.size();
    if (const size_t short_at = r.find(kDeepSeekCallsShort); short_at < at)
      at = short_at, opener = kDeepSeekCallsShort.size();
    if (at == std::string_view::npos) {
      const size_t held = std::max(partial_marker(r, kDeepSeekCalls), partial_marker(r, kDeepSeekCallsShort));
      raw_ += final_ ? r : r.substr(0, r.size() - held);
      return;
    }
    raw_ += r.substr(0, at);
    const size_t end = r.find(kDeepSeekCallsEnd, at + opener);
    if (end == std::string_view::npos && !final_) return;  // an unfinished block: held
    const size_t inner_end = end == std::string_view::npos ? r.size() : end;
    const size_t block_end = end == std::string_view::npos ? r.size() : end + kDeepSeekCallsEnd.size();
    std::optional<std::vector<ParsedCall>> calls =
        deepseek_block(r.substr(at + opener, inner_end - at - opener), opener == kDeepSeekCallsShort.size());
    if (calls)
      take_all(std::move(*calls), r.substr(at, block_end - at));
    else
      raw_ += r.substr(at, block_end - at);
    raw_ += r.substr(block_end);  // content after the block
  }

  // The calls inside a DeepSeek block, each <｜tool▁call▁begin｜>...<｜tool▁call▁end｜> (the
  // last close may be missing: the reply ended); after the short opener the first call's
  // own opener may be left out.
  static std::optional<std::vector<ParsedCall>> deepseek_block(std::string_view inner, bool short_opener) {
    std::vector<ParsedCall> calls;
    inner = ltrim(inner);
    bool implied = short_opener && inner.substr(0, kDeepSeekCall.size()) != kDeepSeekCall;
    while (!inner.empty()) {
      if (inner.substr(0, kDeepSeekCall.size()) == kDeepSeekCall)
        inner.remove_prefix(kDeepSeekCall.size());
      else if (!implied)
        return std::nullopt;
      implied = false;
      const size_t close = inner.find(kDeepSeekCallEnd);
      std::optional<ParsedCall> call = chat::deepseek_call(inner.substr(0, close));
      if (!call) return std::nullopt;
      calls.push_back(std::move(*call));
      inner = close == std::string_view::npos ? std::string_view() : ltrim(inner.substr(close + kDeepSeekCallEnd.size()));
    }
    if (calls.empty()) return std::nullopt;
    return calls;
  }

  // Every call of `calls`, or, past max_tool_calls, none: `text` stays content.
  void take_all(std::vector<ParsedCall> calls, std::string_view text) {
    if (!room_for(calls.size())) return void(raw_ += text);
    for (ParsedCall& call : calls) out_.calls.push_back(std::move(call));
  }

  static std::string quote(std::string_view text);

  const ChatOutputFormat& f_;
  const bool final_;
  bool thought_ = false;  // a thought was opened: the content after it is trimmed
  std::string raw_;       // the content before trimming
  Scan out_;
};

std::string Scanner::quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string random_call_id() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

// The part of `now` past what was released; `now` must extend it.
std::string past(const std::string& released, const std::string& now, const char* field) {
  if (now.compare(0, released.size(), released) != 0)
    throw Error(ErrorCategory::internal, std::string("chat output parser: the streamed ") + field +
                                             " is not a prefix of the parse of the longer text");
  return now.substr(released.size());
}

}  // namespace

const char* to_string(ToolCallFormat format) noexcept {
  switch (format) {
    case ToolCallFormat::none: return "none";
    case ToolCallFormat::hermes: return "hermes";
    case ToolCallFormat::llama3: return "llama3";
    case ToolCallFormat::mistral: return "mistral";
    case ToolCallFormat::granite: return "granite";
    case ToolCallFormat::deepseek: return "deepseek";
  }
  return "none";
}

ToolCallFormat parse_tool_call_format(std::string_view name, std::string_view what) {
  for (ToolCallFormat f : {ToolCallFormat::none, ToolCallFormat::hermes, ToolCallFormat::llama3,
                           ToolCallFormat::mistral, ToolCallFormat::granite, ToolCallFormat::deepseek})
    if (name == to_string(f)) return f;
  throw Error(ErrorCategory::invalid_argument, std::string(what) + " '" + std::string(name) +
                                                   "' is not one of none, hermes, llama3, mistral, granite, deepseek");
}

ChatOutputFormat detect_chat_output_format(std::string_view t) {
  ChatOutputFormat f;
  auto has = [&](std::string_view marker) { return t.find(marker) != std::string_view::npos; };
  if (has(kHermesOpen))
    f.tool_calls = ToolCallFormat::hermes;
  else if (has(kMistralCalls))
    f.tool_calls = ToolCallFormat::mistral;
  else if (has(kGraniteCalls))
    f.tool_calls = ToolCallFormat::granite;
  else if (has(kDeepSeekCalls) || has(kDeepSeekCall))
    f.tool_calls = ToolCallFormat::deepseek;
  else if (has(kPythonTag) || has("<|start_header_id|>ipython"))
    f.tool_calls = ToolCallFormat::llama3;
  if (has(kMistralThinkOpen) || has(kMistralThinkClose)) {
    f.reasoning = true;
    f.thought_markers = ThoughtMarkers::mistral;
  } else {
    f.reasoning = has(kThinkOpen) || has(kThinkClose);
  }
  return f;
}

bool prompt_opens_thinking(std::string_view rendered_prompt, ThoughtMarkers markers) {
  const std::string_view end = rtrim(rendered_prompt);
  const std::string_view open = thought_open(markers);
  return end.size() >= open.size() && end.substr(end.size() - open.size()) == open;
}

struct ChatOutputParser::State {
  ChatOutputFormat format;
  std::string text;
  ChatOutput released;
  bool finished = false;

  ChatOutputDelta advance(bool final) {
    Scan now = Scanner(format, final).run(text);
    ChatOutputDelta delta;
    delta.content = past(released.content, now.content, "content");
    delta.reasoning_content = past(released.reasoning_content, now.reasoning, "reasoning");
    released.content = std::move(now.content);
    released.reasoning_content = std::move(now.reasoning);
    if (now.calls.size() < released.tool_calls.size())
      throw Error(ErrorCategory::internal, "chat output parser: a streamed tool call disappeared");
    for (size_t i = released.tool_calls.size(); i < now.calls.size(); ++i) {
      ParsedCall& c = now.calls[i];
      ToolCall call{c.id.empty() ? random_call_id() : std::move(c.id), std::move(c.name), std::move(c.arguments)};
      const int index = static_cast<int>(i);
      delta.tool_calls.push_back({index, call.id, call.name, ""});
      delta.tool_calls.push_back({index, "", "", call.arguments});
      released.tool_calls.push_back(std::move(call));
    }
    return delta;
  }
};

ChatOutputParser::ChatOutputParser(const ChatOutputFormat& format) : state_(std::make_unique<State>()) {
  state_->format = format;
}
ChatOutputParser::~ChatOutputParser() = default;
ChatOutputParser::ChatOutputParser(ChatOutputParser&&) noexcept = default;
ChatOutputParser& ChatOutputParser::operator=(ChatOutputParser&&) noexcept = default;

ChatOutputDelta ChatOutputParser::feed(std::string_view piece) {
  if (state_->finished) throw Error(ErrorCategory::invalid_argument, "chat output parser: feed() after finish()");
  state_->text += piece;
  return state_->advance(false);
}

ChatOutputDelta ChatOutputParser::finish() {
  if (state_->finished) return {};
  state_->finished = true;
  return state_->advance(true);
}

const ChatOutput& ChatOutputParser::result() const { return state_->released; }

ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format) {
  // One final reading: no partial one before it whose prefix checks could object.
  ChatOutputParser::State state;
  state.format = format;
  state.text = text;
  state.finished = true;
  state.advance(true);
  return std::move(state.released);
}

}  // namespace kestrel
