#include "models/row_view.h"

#include <string>

#include "kestrel/error.h"

namespace kestrel {

QuantizedWeight quantized_row_view(const QuantizedWeight& w, int64_t begin, int64_t count) {
  const std::string rows = "rows [" + std::to_string(begin) + ", +" + std::to_string(count) + ") of a " +
                           to_string(w.format) + " weight of " + std::to_string(w.rows) + " rows";
  if (w.format == QuantFormat::mixed || !w.parts.empty())
    throw Error(ErrorCategory::internal, "quantized_row_view: " + rows + ": a mixed weight has no row view");
  if (begin < 0 || count <= 0 || begin + count > w.rows)
    throw Error(ErrorCategory::internal, "quantized_row_view: " + rows + " are out of range");
  if (w.interleave != 0 && (begin % w.interleave != 0 || count % w.interleave != 0))
    throw Error(ErrorCategory::internal, "quantized_row_view: " + rows + " cut its interleaved groups of " +
                                             std::to_string(w.interleave) + " rows");
  QuantizedWeight v = w;
  v.rows = count;
  v.data = w.data.rows(begin, count);
  if (!w.scales.empty()) v.scales = w.scales.rows(begin, count);
  if (!w.mins.empty()) v.mins = w.mins.rows(begin, count);
  return v;
}

}  // namespace kestrel
