#include "logprobs_json.h"

namespace kestrel_server {

using nlohmann::json;

namespace {

// Code points among bytes [from, to) of `text` (bytes that do not continue a character).
size_t characters(std::string_view text, size_t from, size_t to) {
  size_t n = 0;
  for (size_t i = from; i < to && i < text.size(); ++i) n += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  return n;
}

json bytes_of(const std::string& s) {
  json out = json::array();
  for (char c : s) out.push_back(static_cast<unsigned char>(c));
  return out;
}

}  // namespace

void LogprobsAligner::add(int32_t token, const kestrel::TokenLogprobs& logprobs) {
  pending_.push_back({token, logprobs, bytes_});
  // Rows past the tokenizer's vocabulary (padded embeddings) have no text.
  if (token < tokenizer_.vocab_size()) bytes_ += tokenizer_.token_bytes(token).size();
}

json LogprobsAligner::release(std::string_view text) {
  const bool chat = endpoint_ == Endpoint::chat_completions;
  auto piece = [&](int32_t token) -> std::string {
    return token < tokenizer_.vocab_size() ? tokenizer_.token_bytes(token) : std::string();
  };
  json content = json::array();
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
       text_offset = json::array();
  size_t used = 0;
  for (; used < pending_.size() && pending_[used].start < text.size(); ++used) {
    const Pending& p = pending_[used];
    const std::string token = piece(p.token);
    if (chat) {
      json top = json::array();
      for (const kestrel::TokenLogprob& t : p.logprobs.top) {
        const std::string s = piece(t.token);
        top.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}});
      }
      content.push_back(
          {{"token", token}, {"logprob", p.logprobs.logprob}, {"bytes", bytes_of(token)}, {"top_logprobs", top}});
    } else {
      json top = json::object();
      for (const kestrel::TokenLogprob& t : p.logprobs.top) top[piece(t.token)] = t.logprob;
      if (!top.contains(token)) top[token] = p.logprobs.logprob;
      chars_ += characters(text, counted_, p.start);
      counted_ = std::max(counted_, p.start);
      tokens.push_back(token);
      token_logprobs.push_back(p.logprobs.logprob);
      top_logprobs.push_back(std::move(top));
      text_offset.push_back(chars_);
    }
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
  if (chat) return {{"content", std::move(content)}};
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(text_offset)}};
}

json logprobs_json(const kestrel::Tokenizer& tokenizer, Endpoint endpoint, const std::vector<int32_t>& tokens,
                   const std::vector<kestrel::TokenLogprobs>& logprobs, const std::string& text) {
  LogprobsAligner aligner(tokenizer, endpoint);
  for (size_t i = 0; i < tokens.size() && i < logprobs.size(); ++i) aligner.add(tokens[i], logprobs[i]);
  return aligner.release(text);
}

}  // namespace kestrel_server
