#include "tokenizer/bpe.h"

#include <queue>

#include "kestrel/error.h"

namespace kestrel::tokenizer {

BytePairEncoder::BytePairEncoder(const std::array<int32_t, 256>& byte_ids,
                                 const std::vector<MergeRule>& merges,
                                 std::optional<int32_t> unk_id)
    : byte_ids_(byte_ids), unk_id_(unk_id) {
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const MergeRule& m = merges[rank];
    merges_.insert_or_assign(pair_key(m.left, m.right),
                             Merge{static_cast<uint32_t>(rank), m.merged});
  }
}

const BytePairEncoder::Merge* BytePairEncoder::find(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BytePairEncoder::encode(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id < 0) {
      if (!unk_id_) {
        throw Error(ErrorCategory::internal, "BPE: a byte without a token reached the merge loop");
      }
      id = *unk_id_;
    }
    ids.push_back(id);
  }
  merge(ids, out);
}

void BytePairEncoder::merge(std::span<const int32_t> ids, std::vector<int32_t>& out) const {
  // The word as a doubly linked list of symbols over a vector; a merge keeps the left
  // symbol (now the merged token) and unlinks the right one.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(ids.size());
  for (int32_t id : ids) {
    auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  if (symbols.size() == 1) {
    out.push_back(symbols[0].id);
    return;
  }

  // Candidate merges, lowest rank first and leftmost among equal ranks (Hugging Face's
  // order). An entry goes stale when either symbol changes; it is checked when popped.
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const Merge* m = find(symbols[pos].id, symbols[next].id)) {
      queue.push({m->rank, pos, m->merged});
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const Merge* m = find(left.id, right.id);
    if (m == nullptr || m->merged != top.merged) continue;
    left.id = m->merged;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace kestrel::tokenizer
