// kestrel/decoder.h: text generation over a session.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/session.h"

namespace kestrel {

// How the next token is chosen. Runtime settings: they live with each request.
struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // > 1 discourages tokens already in prompt or output
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;         // same seed, same tokens
};

// When generation of one request ends.
struct StopOptions {
  int max_new_tokens = 64;
  bool stop_at_eos = true;                  // the tokenizer's end-of-sequence token
  std::vector<int32_t> stop_token_ids;      // extra stop tokens
  std::vector<std::string> stop_strings;    // never streamed out, even when split across tokens
};

// Speculative decoding: a cheap drafter proposes up to k tokens, the model scores all of
// them in one step (k + 1 positions of the sequence), keeps the longest prefix the
// rejection rule accepts plus one token of its own, and drops the KV-cache positions of the
// rest. The output distribution is exactly the model's: greedy requests give the tokens of
// plain decoding; sampled ones follow the standard rule (accept a drafted x with
// probability min(1, p(x) / q(x)), else draw from the normalized max(0, p - q)).
enum class SpeculativeMethod : uint8_t {
  none,
  prompt_lookup,  // draft the tokens that followed the latest earlier occurrence of the
                  // sequence's last n-gram in its own prompt + output (no second model)
  draft_model,    // a smaller model with the same vocabulary drafts (Decoder(session, draft))
};
const char* to_string(SpeculativeMethod method) noexcept;
// Parses "none", "prompt-lookup" and "draft" (or "draft-model"); throws
// Error(invalid_argument) naming `what` otherwise.
SpeculativeMethod parse_speculative_method(std::string_view text, std::string_view what = "speculative method");

struct SpeculativeOptions {
  SpeculativeMethod method = SpeculativeMethod::none;
  int num_draft_tokens = 4;  // k, in [1, 32]; fewer near max_new_tokens or the step's buffers
  int ngram_min = 1;         // prompt lookup: the shortest suffix n-gram to match, >= 1
  int ngram_max = 3;         // and the longest, tried first; >= ngram_min, <= 16
};

// When beam search ends (Hugging Face's early_stopping).
enum class EarlyStopping : uint8_t {
  heuristic,  // False: once num_beams hypotheses are finished and the best running beam,
              // scored at the current length, cannot beat the worst of them
  enough,     // True: as soon as num_beams hypotheses are finished
  never,      // "never": only when no running beam can beat them at any length
};

// Beam search, as Hugging Face's generate(num_beams = N, do_sample = False): N beams
// extended by their 2N best continuations each step; a continuation ending in a stop token
// (EOS or stop_token_ids) among the N best becomes a finished hypothesis scored
// sum(log p) / generated_length ^ length_penalty (the stop token counted); the best
// GenerationRequest.num_return_sequences are returned. Beams share their prompt's KV
// blocks and copy a block only when they write into a shared one.
struct BeamSearchOptions {
  int num_beams = 1;            // 1: off; at most SessionOptions.max_sequences
  float length_penalty = 1.0f;  // > 0 favours longer sequences, < 0 shorter ones
  EarlyStopping early_stopping = EarlyStopping::heuristic;
};

// Constrained decoding: every generated sequence is a sentence of a grammar (or a prefix of
// one, when max_new_tokens cuts it short). Set at most one of the two fields.
//   grammar: GBNF as llama.cpp writes it (rules `name ::= ...`, `root` the start symbol;
//     see src/decoding/grammar.h for the syntax), matched against the UTF-8 text of the
//     generated tokens.
//   json_schema: a JSON Schema (as JSON text), compiled to such a grammar with llama.cpp's
//     json-schema-to-grammar semantics (src/decoding/json_schema.h lists the keywords; an
//     unsupported keyword is refused by name). `{"type": "object"}` admits any JSON object
//     (OpenAI's response_format json_object), `{}` any JSON value.
// How the token is chosen (as llama.cpp's sampler does it): the backend samples from the
// unmasked logits with every SamplingOptions setting; if the grammar allows that token it
// stands. Otherwise the logits (penalties and temperature applied) are masked to the
// allowed tokens, top-k, top-p and min-p are applied over the allowed tokens only, and one
// token is drawn from what remains with a random stream of its own. Greedy decoding thus
// gives the allowed token of highest logit; plain sampling (no top-k / top-p / min-p)
// gives exactly the masked distribution p(t) / P(allowed); with those filters the first
// draw filters over all tokens and the redraw over the allowed ones. The full mask walks a
// prefix tree of the vocabulary and is only computed when the sampled token is refused.
// End-of-sequence (EOS with stop_at_eos, and stop_token_ids) is allowed only where the
// grammar can end; special tokens are never allowed otherwise. When the grammar is
// complete and admits no further character the sequence finishes (FinishReason::
// stop_token, no stop token appended). Each of num_return_sequences samples has its own
// grammar state. Not combined with beam search or speculative decoding (refused naming
// both options), nor in a tensor / pipeline parallel run.
struct ConstraintOptions {
  std::string grammar;      // GBNF; empty: none
  std::string json_schema;  // JSON Schema text; empty: none
};

// What each generated token reports besides its id (TensorRT-LLM's OutputConfig).
// Log-probabilities are those of the model's own distribution at that position: the
// log_softmax of the raw logits, before repetition / presence / frequency penalties,
// temperature, top-k / top-p / min-p and any grammar mask, as OpenAI and vLLM report
// them. They do not depend on the sampling settings, and a sampled token that the
// filters made likely can still show a low log-probability. Off, they cost nothing; on,
// each logits row of the request is read to the host once and scanned once (O(vocab)).
inline constexpr int kMaxTopLogprobs = 20;
struct OutputOptions {
  bool logprobs = false;  // GenerationResult::logprobs and StreamEvent::logprobs
  int top_logprobs = 0;   // the most likely tokens at each position, 0 .. kMaxTopLogprobs; needs logprobs
};

// One candidate token and its log-probability (natural log, f32).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};
// A generated token's log-probability and the top alternatives at its position.
struct TokenLogprobs {
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // OutputOptions.top_logprobs entries, most likely first (ties: lower id first)
};

struct GenerationRequest {
  std::string prompt;                        // used when prompt_ids is empty
  std::vector<int32_t> prompt_ids;           // pre-tokenized prompt
  SamplingOptions sampling;
  StopOptions stop;
  SpeculativeOptions speculative;
  BeamSearchOptions beam;
  ConstraintOptions constraint;
  OutputOptions output;  // not with beam search
  // With beam search: the n best hypotheses. With sampling (temperature > 0): n
  // completions of the prompt, sharing its KV blocks; completion j draws with its own
  // seed (j = 0 with SamplingOptions.seed itself). Results in GenerationResult::sequences.
  int num_return_sequences = 1;
};

enum class FinishReason { length, stop_token, stop_string, cancelled, error };
const char* to_string(FinishReason reason) noexcept;

// One returned sequence of a request with beams or several samples.
struct GeneratedSequence {
  std::vector<int32_t> tokens;  // generated ids, including a stop token that ended it
  std::string text;             // without the stop token or stop string
  FinishReason finish = FinishReason::length;
  double score = 0.0;           // beam search: its length-normalized log-probability
  std::vector<TokenLogprobs> logprobs;  // with OutputOptions.logprobs: one per entry of tokens
};

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> tokens;  // generated ids, including a stop token that ended it
  std::string text;             // generated text, without stop token or stop string
  FinishReason finish = FinishReason::length;
  std::string error;            // set when finish == error (e.g. KV cache exhausted)
  // With OutputOptions.logprobs: one per entry of `tokens` (a stop token that ended the
  // sequence, and tokens whose text a stop string cut, included).
  std::vector<TokenLogprobs> logprobs;
  int cached_prompt_tokens = 0; // prompt positions taken from the prefix cache, not computed
  double prompt_seconds = 0.0;  // context phase, including the first token
  double decode_seconds = 0.0;  // generation phase
  // Speculative decoding: tokens drafted, and how many of them the model accepted
  // (acceptance rate = accepted_tokens / drafted_tokens).
  int drafted_tokens = 0;
  int accepted_tokens = 0;
  // Beam search or num_return_sequences > 1: every returned sequence (beams best first);
  // tokens, text and finish above are those of sequences[0].
  std::vector<GeneratedSequence> sequences;
};

// One streamed token of one request. `text` is the newly final text (possibly empty: bytes
// held back because they may start a stop string or end mid UTF-8 character). Beam search
// streams its best sequence once the search ends; n completions each stream their own
// tokens, told apart by `sequence`.
struct StreamEvent {
  size_t request = 0;  // index into the requests passed to generate()
  int32_t token = 0;
  std::string_view text;
  int sequence = 0;    // which completion (GenerationResult::sequences) with num_return_sequences
  const TokenLogprobs* logprobs = nullptr;  // the token's, with OutputOptions.logprobs (valid during the call)
};
// Return false to cancel that request's sequence (it finishes with FinishReason::cancelled).
// In a tensor / pipeline parallel run the callback runs on every rank and rank 0's answer
// decides for all of them.
using StreamCallback = std::function<bool(const StreamEvent&)>;

class Decoder {
 public:
  explicit Decoder(Session& session);
  // With a draft session for SpeculativeMethod::draft_model: its model must have the
  // session's vocabulary (same tokenizer), room for as many sequences and tokens, and
  // neither may be a tensor / pipeline parallel run; throws Error(invalid_argument) naming
  // what differs. Both sessions must outlive the decoder.
  Decoder(Session& session, Session& draft);

  // Runs all requests to completion, up to the session's max_sequences at a time; others
  // join as slots free up. Invalid requests throw Error(invalid_argument / limit) before
  // any work starts; a request that runs out of KV cache finishes with FinishReason::error.
  std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests,
                                         const StreamCallback& on_token = {});
  // One request; throws Error(limit) if it cannot finish for lack of KV cache.
  GenerationResult generate(const GenerationRequest& request,
                            const StreamCallback& on_token = {});

  // Teacher forcing: the logits after every position of `ids`, row-major [ids.size(), vocab].
  std::vector<float> score(std::span<const int32_t> ids);

 private:
  Session& session_;
  Session* draft_ = nullptr;
};

}  // namespace kestrel
