#include "decoding/draft_model.h"

#include <algorithm>

#include "decoding/speculative.h"
#include "kestrel/error.h"

namespace kestrel {

DraftModel::~DraftModel() {
  for (auto& [key, seq] : seqs_) s_.kv->release(seq.blocks);
}

bool DraftModel::reserve(Sequence& seq, int positions) {
  try {
    s_.kv->reserve(seq.blocks, positions);
    return true;
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::limit) throw;
    return false;  // the draft cache is full: draft less, the target decides anyway
  }
}

void DraftModel::draft(std::span<Job> jobs) {
  std::vector<Job*> live;
  for (Job& job : jobs) {
    job.tokens.clear();
    job.q.clear();
    if (job.count <= 0 || job.history.empty()) continue;
    Sequence& seq = seqs_[job.key];
    // The last history token is fed again when it is cached already: its logits are wanted.
    const int L = static_cast<int>(job.history.size());
    if (seq.cached > L - 1) keep(job.key, L - 1);
    live.push_back(&job);
  }

  // Context steps: each history past its cached prefix, packed up to max_step_tokens.
  std::vector<Job*> catching = live;
  while (!catching.empty()) {
    std::vector<StepSlice> slices;
    std::vector<std::pair<Sequence*, int>> fed;
    std::vector<std::pair<Job*, int>> rows;
    std::vector<Job*> next;
    int budget = s_.options.max_step_tokens;
    for (Job* job : catching) {
      Sequence& seq = seqs_[job->key];
      const int left = static_cast<int>(job->history.size()) - seq.cached;
      if (budget == 0) {
        next.push_back(job);
        continue;
      }
      const int n = std::min(left, budget);
      if (!reserve(seq, seq.cached + n)) continue;  // drafts nothing this time
      const bool last = n == left;
      slices.push_back({job->history.data() + seq.cached, n, seq.cached, &seq.blocks, last ? 1 : 0});
      fed.emplace_back(&seq, n);
      if (last)
        rows.emplace_back(job, static_cast<int>(rows.size()));
      else
        next.push_back(job);
      budget -= n;
    }
    if (slices.empty()) break;
    runner_.run(slices, /*generation=*/false);
    for (auto [seq, n] : fed) seq->cached += n;
    if (!rows.empty()) draw(rows, static_cast<int>(rows.size()));
    catching = std::move(next);
  }

  // Generation steps: feed each job's latest drafted token until it has `count`.
  for (;;) {
    std::vector<StepSlice> slices;
    std::vector<Sequence*> fed;
    std::vector<std::pair<Job*, int>> rows;
    for (Job* job : live) {
      if (job->tokens.empty() || static_cast<int>(job->tokens.size()) >= job->count) continue;
      Sequence& seq = seqs_[job->key];
      if (!reserve(seq, seq.cached + 1)) continue;
      slices.push_back({&job->tokens.back(), 1, seq.cached, &seq.blocks, 1});
      fed.push_back(&seq);
      rows.emplace_back(job, static_cast<int>(rows.size()));
    }
    if (slices.empty()) break;
    runner_.run(slices, /*generation=*/true);
    for (Sequence* seq : fed) seq->cached += 1;
    draw(rows, static_cast<int>(rows.size()));
  }
}

void DraftModel::draw(const std::vector<std::pair<Job*, int>>& rows, int total_rows) {
  const size_t V = static_cast<size_t>(s_.model->config().vocab_size);
  logits_.resize(static_cast<size_t>(total_rows) * V);
  runner_.read_logits(total_rows, logits_.data());
  std::vector<int32_t> history;
  std::vector<double> q;
  for (auto [job, r] : rows) {
    history.assign(job->history.begin(), job->history.end());
    history.insert(history.end(), job->tokens.begin(), job->tokens.end());
    sampling_distribution(std::span<const float>(logits_.data() + r * V, V), job->row, history,
                          job->prompt_length, q);
    const uint64_t step = job->row.step + job->tokens.size();
    job->tokens.push_back(draw_token(q, speculative_uniform(job->row.seed, step, SpeculativeDraw::draft)));
    if (job->row.temperature > 0.0f) job->q.push_back(q);
  }
}

void DraftModel::keep(size_t key, int positions) {
  auto it = seqs_.find(key);
  if (it == seqs_.end()) return;
  Sequence& seq = it->second;
  seq.cached = std::min(seq.cached, std::max(positions, 0));
  s_.kv->truncate(seq.blocks, seq.cached);
}

void DraftModel::release(size_t key) {
  auto it = seqs_.find(key);
  if (it == seqs_.end()) return;
  s_.kv->release(it->second.blocks);
  seqs_.erase(it);
}

}  // namespace kestrel
