#include "op_checks.h"

#include <cmath>

#include "kestrel/error.h"
#include "kquant_blocks.h"

namespace kestrel {

void op_fail(const char* op, const std::string& message) {
  throw Error(ErrorCategory::internal, std::string(op) + ": " + message);
}

void expect_op_tensor(const TensorView& t, Device device, DType dtype,
                      std::initializer_list<int64_t> shape, const char* op, const char* name) {
  if (t.empty() && t.numel() != 0) op_fail(op, std::string(name) + " is null");
  if (t.device != device)
    op_fail(op, std::string(name) + " " + t.shape_string() + " is not on " + to_string(device));
  if (t.dtype != dtype)
    op_fail(op, std::string(name) + " " + t.shape_string() + " should be " + to_string(dtype));
  bool ok = t.rank == static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) {
    if (ok && d >= 0 && t.dims[i] != d) ok = false;
    ++i;
  }
  if (!ok) op_fail(op, std::string(name) + " has unexpected shape " + t.shape_string());
}

int check_attention_params(Device device, const AttentionParams& params, const char* op) {
  const int nh = params.n_heads, nkv = params.n_kv_heads, hd = params.head_dim;
  if (nh <= 0 || nkv <= 0 || hd <= 0 || nh % nkv != 0)
    op_fail(op, "bad head counts: n_heads " + std::to_string(nh) + ", n_kv_heads " +
                    std::to_string(nkv) + ", head_dim " + std::to_string(hd));
  if (!(params.scale > 0.0f) || !std::isfinite(params.scale))
    op_fail(op, "scale must be positive and finite (usually 1/sqrt(head_dim)), got " +
                    std::to_string(params.scale));
  if (params.sliding_window < 0)
    op_fail(op, "sliding_window must be 0 (off) or positive, got " + std::to_string(params.sliding_window));
  if (!(params.logit_softcap >= 0.0f) || !std::isfinite(params.logit_softcap))
    op_fail(op, "logit_softcap must be 0 (off) or positive, got " + std::to_string(params.logit_softcap));
  // Its dtype (the activation dtype) is the backend's to check.
  if (!params.sinks.empty()) expect_op_tensor(params.sinks, device, params.sinks.dtype, {nh}, op, "sinks");
  const RotaryParams& rp = params.rotary;
  if (rp.style == RotaryStyle::none) return 0;
  const int rot = rp.rotary_dim == 0 ? hd : rp.rotary_dim;
  if (rot < 0 || rot > hd || rot % 2 != 0)
    op_fail(op, "rotary_dim " + std::to_string(rp.rotary_dim) + " must be even and within head_dim " +
                    std::to_string(hd));
  expect_op_tensor(rp.inv_freq, device, DType::f32, {rot / 2}, op, "rotary.inv_freq");
  return rot;
}

void check_quantized_weight(Device device, const QuantizedWeight& w, const char* op) {
  const int64_t M = w.rows, K = w.cols;
  if (w.format == QuantFormat::mixed) {
    if (w.parts.empty() || M < 0 || K <= 0 || !w.data.empty() || !w.scales.empty() || !w.mins.empty())
      op_fail(op, "a mixed weight holds its rows in parts only (rows " + std::to_string(M) + ", cols " +
                      std::to_string(K) + ", " + std::to_string(w.parts.size()) + " parts)");
    if (w.int8_activations) op_fail(op, "W8A8 (int8_activations) needs int8 weights, not mixed parts");
    int64_t rows = 0;
    for (const QuantizedWeight& p : w.parts) {
      if (p.format == QuantFormat::mixed || p.cols != K || !p.parts.empty())
        op_fail(op, std::string("a part of a mixed weight must be a plain weight of its cols, got ") +
                        to_string(p.format) + " with cols " + std::to_string(p.cols));
      check_quantized_weight(device, p, op);
      rows += p.rows;
    }
    if (rows != M)
      op_fail(op, "the parts of a mixed weight hold " + std::to_string(rows) + " rows, not " + std::to_string(M));
    return;
  }
  if (!w.parts.empty()) op_fail(op, std::string(to_string(w.format)) + " weight with parts (only mixed has them)");
  if (w.interleave != 0 &&
      (device.kind != DeviceKind::cpu ||
       (w.format != QuantFormat::int4 && w.format != QuantFormat::int8 && !kquant::is_block_format(w.format)) ||
       w.interleave != 8 || M % 8 != 0 || K % 32 != 0 || w.group_size % 32 != 0 || w.int8_activations))
    op_fail(op, "interleave " + std::to_string(w.interleave) + " is the CPU's layout of int4, int8 and ggml block "
                "weights with rows a multiple of 8 and cols a multiple of 32, not W8A8 (" + to_string(device) +
                ", " + to_string(w.format) +
                ", rows " + std::to_string(M) + ", cols " + std::to_string(K) + ")");
  if (M < 0 || K <= 0 || w.group_size <= 0)
    op_fail(op, "bad quantized weight: rows " + std::to_string(M) + ", cols " + std::to_string(K) +
                    ", group_size " + std::to_string(w.group_size));
  const int64_t G = w.groups();
  if (w.int8_activations && (w.format != QuantFormat::int8 || w.group_size != K))
    op_fail(op, "W8A8 (int8_activations) needs int8 weights with one group per row");
  if (kquant::is_block_format(w.format)) {
    const int columns = kquant::block_columns(w.format);
    if (w.group_size != columns || K % columns != 0)
      op_fail(op, std::string(to_string(w.format)) + " weights need group_size " + std::to_string(columns) +
                      " and cols a multiple of it, got " + std::to_string(w.group_size) + " and " + std::to_string(K));
    expect_op_tensor(w.data, device, DType::i8, {M, G * kquant::block_bytes(w.format)}, op, "w.data");
    if (!w.scales.empty() || !w.mins.empty()) op_fail(op, "ggml block weights keep their scales in their blocks");
  } else if (w.format == QuantFormat::fp8_e4m3) {
    if (w.group_size != K) op_fail(op, "fp8_e4m3 weights need one scale per row (group_size = cols)");
    expect_op_tensor(w.data, device, DType::i8, {M, K}, op, "w.data");
    expect_op_tensor(w.scales, device, DType::f32, {M, 1}, op, "w.scales");
  } else if (w.format == QuantFormat::int8) {
    expect_op_tensor(w.data, device, DType::i8, {M, K}, op, "w.data");
    expect_op_tensor(w.scales, device, DType::f32, {M, G}, op, "w.scales");
  } else {
    if (w.group_size % 32 != 0)
      op_fail(op, "int4 group_size must be a multiple of 32, got " + std::to_string(w.group_size));
    expect_op_tensor(w.data, device, DType::i8, {M, G * w.group_size / 2}, op, "w.data");
    expect_op_tensor(w.scales, device, DType::f16, {M, G}, op, "w.scales");
    expect_op_tensor(w.mins, device, DType::f16, {M, G}, op, "w.mins");
  }
}

void check_quantized_linear(Device device, DType act, const TensorView& x, const QuantizedWeight& w,
                            const TensorView* bias, const TensorView& out, const char* op) {
  check_quantized_weight(device, w, op);
  const int64_t M = w.rows, K = w.cols;
  expect_op_tensor(x, device, act, {-1, K}, op, "x");
  expect_op_tensor(out, device, out.dtype == DType::f32 ? DType::f32 : act, {x.dim(0), M}, op, "out");
  if (bias) expect_op_tensor(*bias, device, act, {M}, op, "bias");
}

void check_quantized_embedding(Device device, const TensorView& ids, const TensorView& positions,
                               const QuantizedWeight& wte, const TensorView* wpe, const TensorView& out) {
  const char* op = "embedding (quantized table)";
  if (wte.format == QuantFormat::mixed) op_fail(op, "a table of mixed formats is not supported");
  check_quantized_weight(device, wte, op);
  expect_op_tensor(ids, device, DType::i32, {-1}, op, "ids");
  const int64_t T = ids.dim(0), H = wte.cols;
  if (out.dtype != DType::f32 && out.dtype != DType::f16 && out.dtype != DType::bf16)
    op_fail(op, std::string("out must be f32, f16 or bf16, got ") + to_string(out.dtype));
  expect_op_tensor(out, device, out.dtype, {T, H}, op, "out");
  if (wpe) {
    expect_op_tensor(*wpe, device, out.dtype, {-1, H}, op, "wpe");
    expect_op_tensor(positions, device, DType::i32, {T}, op, "positions");
  }
}

}  // namespace kestrel
