// Statements and expressions evaluated as jinja2's compiled code would, with Python's
// operator semantics (interpreter.cc) and the builtins in builtins.cc.
#include "tokenizer/jinja/interpreter.h"

#include <cmath>

#include "kestrel/error.h"
#include "tokenizer/jinja/builtins.h"

namespace kestrel::jinja {
namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(ErrorCategory::invalid_argument, what); }
[[noreturn]] void fail_undefined(const Value& v) { fail(v.s); }

std::string py_type(const Value& v) {
  const std::string t = type_name(v);
  return t.substr(0, t.find(' '));
}

[[noreturn]] void unsupported_operands(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  fail("unsupported operand type(s) for " + op + ": '" + py_type(a) + "' and '" + py_type(b) + "'");
}

// jinja2's object_type_repr: "dict object", but "None" for None.
std::string object_name(const Value& v) { return v.is_none() ? "None" : type_name(v); }

int64_t int_of(const Value& v) { return v.kind == Kind::boolean ? v.b : v.i; }
bool is_int(const Value& v) { return v.kind == Kind::integer || v.kind == Kind::boolean; }

// a op b on int64, refusing overflow (Python's ints are unbounded; templates never need that).
template <typename Op>
Value checked_int(int64_t a, int64_t b, Op op) {
  int64_t r = 0;
  if (op(a, b, &r)) fail("integer overflow");
  return Value::integer(r);
}

Value repeat(const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::make_list({}, seq.kind == Kind::tuple);
  const size_t unit = seq.is_string() ? seq.s.size() : seq.list->size();
  if (unit == 0) return seq;
  if (static_cast<uint64_t>(n) > (size_t{1} << 26) / unit) fail("repetition too large");
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::make_list(std::move(out), seq.kind == Kind::tuple);
}

// Python slice indices (start, stop, step) for a sequence of `size`.
std::vector<size_t> slice_indices(size_t size, const Value& start, const Value& stop, const Value& step) {
  const auto n = static_cast<int64_t>(size);
  const int64_t st = step.is_none() ? 1 : int_of(step);
  if (st == 0) fail("slice step cannot be zero");
  const auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = int_of(v);
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  const int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<size_t> out;
  for (int64_t i = b; st > 0 ? i < e : i > e;) {
    out.push_back(static_cast<size_t>(i));
    if (__builtin_add_overflow(i, st, &i)) break;
  }
  return out;
}

}  // namespace

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    const auto it = s->vars.find(name);
    if (it != s->vars.end()) return &it->second;
  }
  return nullptr;
}

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  const bool numbers = a.is_number() && b.is_number();
  const bool ints = numbers && is_int(a) && is_int(b);
  if (op == "+") {
    if (ints) return checked_int(int_of(a), int_of(b), [](int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); });
    if (numbers) return Value::floating(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      if (a.markup == b.markup) {
        Value out = Value::string(a.s + b.s);
        out.markup = a.markup;
        return out;
      }
      Value out = Value::string((a.markup ? a.s : html_escape(a.s)) + (b.markup ? b.s : html_escape(b.s)));
      out.markup = true;
      return out;
    }
    if (a.is_sequence() && a.kind == b.kind && !a.generator && !b.generator) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(out), a.kind == Kind::tuple);
    }
  } else if (op == "-") {
    if (ints) return checked_int(int_of(a), int_of(b), [](int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); });
    if (numbers) return Value::floating(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (ints) return checked_int(int_of(a), int_of(b), [](int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); });
    if (numbers) return Value::floating(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_sequence()) && is_int(b)) return repeat(a, int_of(b));
    if ((b.is_string() || b.is_sequence()) && is_int(a)) return repeat(b, int_of(a));
  } else if (op == "/") {
    if (numbers) {
      if (b.as_double() == 0) fail("division by zero");
      return Value::floating(a.as_double() / b.as_double());
    }
  } else if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) {
      if (b.kind == Kind::tuple) return Value::string(percent_format(a.s, *b.list, nullptr));
      if (b.kind == Kind::dict) return Value::string(percent_format(a.s, {}, b.dict.get()));
      return Value::string(percent_format(a.s, {b}, nullptr));
    }
    if (numbers) {
      if (b.as_double() == 0) fail(op == "//" ? "integer division or modulo by zero" : "modulo by zero");
      if (ints) {
        const int64_t x = int_of(a), y = int_of(b);
        if (x == INT64_MIN && y == -1) fail("integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;
        return Value::integer(op == "//" ? q : m);
      }
      const double x = a.as_double(), y = b.as_double();
      if (op == "//") return Value::floating(std::floor(x / y));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value::floating(m);
    }
  } else if (op == "**") {
    if (ints && int_of(b) >= 0) {
      int64_t base = int_of(a), e = int_of(b), out = 1;
      while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(out, base, &out)) fail("integer overflow");
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) fail("integer overflow");
      }
      return Value::integer(out);
    }
    if (numbers) {
      if (a.as_double() == 0 && b.as_double() < 0) fail("0.0 cannot be raised to a negative power");
      return Value::floating(std::pow(a.as_double(), b.as_double()));
    }
  } else if (op == "~") {
    return Value::string(to_str(a) + to_str(b));
  }
  unsupported_operands(op, a, b);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Kind::undefined: return false;
    case Kind::string:
      if (!item.is_string()) {
        if (item.is_undefined()) fail_undefined(item);
        fail("'in <string>' requires string as left operand, not " + py_type(item));
      }
      return container.s.find(item.s) != std::string::npos;
    case Kind::list:
    case Kind::tuple:
      for (const Value& v : *container.list)
        if (equals(v, item)) return true;
      return false;
    case Kind::dict: return item.is_string() && container.dict->find(item.s) != nullptr;
    default: fail("argument of type '" + py_type(container) + "' is not iterable");
  }
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::undefined: return {};
    case Kind::list:
    case Kind::tuple: return *v.list;
    case Kind::dict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::string: {
      List chars;
      for (std::string_view c : code_points(v.s)) chars.push_back(Value::string(std::string(c)));
      return chars;
    }
    default: fail("'" + py_type(v) + "' object is not iterable");
  }
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes)
    throw Error(ErrorCategory::limit, "the rendered text passes " + std::to_string(limits_.max_output_bytes) + " bytes");
}

void Interpreter::step() {
  if (++steps_ > limits_.max_steps)
    throw Error(ErrorCategory::limit, "the template ran more than " + std::to_string(limits_.max_steps) + " steps");
}

std::string Interpreter::render(const Body& body, const Value& context) {
  auto globals = std::make_shared<Scope>();
  add_globals(*this, globals->vars);
  auto root = std::make_shared<Scope>();
  root->parent = globals;
  if (context.is_mapping())
    for (const auto& [key, value] : context.dict->items) root->vars[key] = value;
  std::string out;
  const auto release = [&] {
    for (const auto& ns : namespaces_) ns->items.clear();
    namespaces_.clear();
  };
  try {
    exec(body, root, out);
  } catch (const Error& e) {
    release();
    throw Error(e.category(), "line " + std::to_string(line_) + ": " + e.message());
  }
  release();
  return out;
}

std::shared_ptr<Dict> Interpreter::new_namespace() {
  namespaces_.push_back(std::make_shared<Dict>());
  return namespaces_.back();
}

Interpreter::Flow Interpreter::exec(const Body& body, const std::shared_ptr<Scope>& scope, std::string& out) {
  for (const NodePtr& node : body) {
    const Flow flow = exec(*node, scope, out);
    if (flow != Flow::normal) return flow;
  }
  return Flow::normal;
}

Interpreter::Depth::Depth(Interpreter* in) : in_(in) {
  if (++in_->depth_ > in_->limits_.max_nesting)
    throw Error(ErrorCategory::limit, "the template nests deeper than " + std::to_string(in_->limits_.max_nesting) +
                                          " expressions, blocks and macro calls");
}

Interpreter::Flow Interpreter::exec(const Node& node, const std::shared_ptr<Scope>& scope, std::string& out) {
  const Depth depth(this);
  step();
  line_ = node.line;
  switch (node.kind) {
    case Node::Kind::text: out += node.text; break;
    case Node::Kind::output: {
      const Value v = eval(*node.expr, scope);
      out += to_str(v);
      break;
    }
    case Node::Kind::if_:
      for (const auto& [cond, body] : node.branches) {
        line_ = cond->line;
        if (eval(*cond, scope).truthy()) return exec(body, scope, out);
      }
      return exec(node.else_body, scope, out);
    case Node::Kind::for_: exec_for(node, scope, out); break;
    case Node::Kind::set: exec_set(node, scope); break;
    case Node::Kind::set_block: {
      std::string text;
      exec(node.body, scope, text);
      Value v = Value::string(std::move(text));
      if (node.expr) v = eval_filter(*node.expr, scope, &v);
      scope->vars[node.text] = std::move(v);
      break;
    }
    case Node::Kind::macro: scope->vars[node.text] = make_macro(node, scope, &node.body); break;
    case Node::Kind::call_block: {
      // caller() renders the block's body; it is passed to the called macro as `caller`.
      const Expr& call = *node.expr;
      Value callee = eval(*call.args[0], scope);
      CallArgs args = eval_args(call, scope, 1);
      args.keyword.emplace_back("caller", make_macro(node, scope, &node.body));
      out += to_str(this->call(callee, args));
      break;
    }
    case Node::Kind::filter_block: {
      std::string text;
      exec(node.body, scope, text);
      const Value input = Value::string(std::move(text));
      out += to_str(eval_filter(*node.expr, scope, &input));
      break;
    }
    case Node::Kind::break_: return Flow::break_;
    case Node::Kind::continue_: return Flow::continue_;
    case Node::Kind::body: return exec(node.body, scope, out);
  }
  check_size(out.size());
  return Flow::normal;
}

namespace {

void bind_targets(Scope& scope, const std::vector<std::string>& targets, const Value& item) {
  if (targets.size() == 1) {
    scope.vars[targets[0]] = item;
    return;
  }
  const List values = iterate(item);
  if (values.size() != targets.size())
    fail(values.size() > targets.size() ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                                        : "not enough values to unpack (expected " + std::to_string(targets.size()) +
                                              ", got " + std::to_string(values.size()) + ")");
  for (size_t k = 0; k < targets.size(); ++k) scope.vars[targets[k]] = values[k];
}

}  // namespace

void Interpreter::exec_for(const Node& node, const std::shared_ptr<Scope>& scope, std::string& out) {
  const Value iterable = eval(*node.expr, scope);
  if (iterable.kind == Kind::none || iterable.is_number()) fail("'" + py_type(iterable) + "' object is not iterable");
  List items = iterate(iterable);
  if (node.cond) {  // `for x in xs if cond`: filtered before the loop object counts
    List kept;
    for (const Value& item : items) {
      step();
      auto s = std::make_shared<Scope>();
      s->parent = scope;
      bind_targets(*s, node.targets, item);
      if (eval(*node.cond, s).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < n; ++k) {
    step();
    auto s = std::make_shared<Scope>();
    s->parent = scope;
    bind_targets(*s, node.targets, items[k]);
    auto loop = std::make_shared<Dict>();
    loop->set("index", Value::integer(k + 1));
    loop->set("index0", Value::integer(k));
    loop->set("revindex", Value::integer(n - k));
    loop->set("revindex0", Value::integer(n - k - 1));
    loop->set("first", Value::boolean(k == 0));
    loop->set("last", Value::boolean(k == n - 1));
    loop->set("length", Value::integer(n));
    loop->set("depth", Value::integer(1));
    loop->set("depth0", Value::integer(0));
    loop->set("previtem", k > 0 ? items[k - 1] : Value::undefined("there is no previous item"));
    loop->set("nextitem", k + 1 < n ? items[k + 1] : Value::undefined("there is no next item"));
    loop->set("cycle", Value::function("loop.cycle", [k](CallArgs& args) {
      if (args.positional.empty()) fail("no items for cycling given");
      return args.positional[static_cast<size_t>(k) % args.positional.size()];
    }));
    s->vars["loop"] = Value::make_dict(std::move(loop));
    if (exec(node.body, s, out) == Flow::break_) break;
  }
  if (n == 0) exec(node.else_body, scope, out);
}

void Interpreter::exec_set(const Node& node, const std::shared_ptr<Scope>& scope) {
  Value v = eval(*node.expr, scope);
  if (node.ns_attr) {
    const Value* ns = scope->lookup(node.targets[0]);
    if (!ns || ns->kind != Kind::name_space) fail("cannot assign attribute on non-namespace object");
    ns->dict->set(node.targets[1], std::move(v));
    return;
  }
  bind_targets(*scope, node.targets, v);
}

Value Interpreter::make_macro(const Node& node, const std::shared_ptr<Scope>& scope, const Body* body) {
  // The defining scope is held weakly: the macro usually lives in that scope, and a
  // strong reference would be a cycle that never frees.
  const Node* def = &node;
  const std::weak_ptr<Scope> defining = scope;
  return Value::function(node.text.empty() ? "caller" : node.text, [this, def, defining, body](CallArgs& args) {
    const std::shared_ptr<Scope> scope = defining.lock();
    if (!scope) fail("macro '" + def->text + "' called after the block that defined it ended");
    if (++call_depth_ > limits_.max_call_depth) {
      --call_depth_;
      throw Error(ErrorCategory::limit, "macro calls nest deeper than " + std::to_string(limits_.max_call_depth));
    }
    struct Depth {
      int* d;
      ~Depth() { --*d; }
    } depth{&call_depth_};
    auto s = std::make_shared<Scope>();
    s->parent = scope;
    List varargs;
    for (size_t k = 0; k < args.positional.size(); ++k) {
      if (k < def->params.size()) {
        s->vars[def->params[k].name] = args.positional[k];
      } else {
        varargs.push_back(args.positional[k]);
      }
    }
    auto kwargs = std::make_shared<Dict>();
    for (auto& [key, value] : args.keyword) {
      bool is_param = false;
      for (const Param& p : def->params) is_param |= p.name == key;
      if (is_param || key == "caller") {
        s->vars[key] = value;
      } else {
        kwargs->set(key, value);
      }
    }
    for (const Param& p : def->params) {
      if (s->vars.count(p.name)) continue;
      s->vars[p.name] = p.default_value ? eval(*p.default_value, s)
                                        : Value::undefined("parameter '" + p.name + "' was not provided");
    }
    s->vars["varargs"] = Value::make_list(std::move(varargs), /*tuple=*/true);
    s->vars["kwargs"] = Value::make_dict(std::move(kwargs));
    std::string out;
    const int saved_line = line_;
    exec(*body, s, out);
    line_ = saved_line;
    return Value::string(std::move(out));
  });
}

CallArgs Interpreter::eval_args(const Expr& e, const std::shared_ptr<Scope>& scope, size_t first) {
  CallArgs args;
  for (size_t k = first; k < e.args.size(); ++k) args.positional.push_back(eval(*e.args[k], scope));
  for (const auto& [key, value] : e.kwargs) args.keyword.emplace_back(key, eval(*value, scope));
  return args;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (callee.kind != Kind::callable) fail("'" + py_type(callee) + "' object is not callable");
  return callee.call->fn(args);
}

Value Interpreter::get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (std::optional<Value> m = method(*this, obj, name)) return *m;
  if ((obj.kind == Kind::dict || obj.kind == Kind::name_space))
    if (const Value* v = obj.dict->find(name)) return *v;
  return Value::undefined("'" + object_name(obj) + "' has no attribute '" + name + "'");
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.generator) fail("'generator' object is not subscriptable");
  if (obj.kind == Kind::dict && key.is_string())
    if (const Value* v = obj.dict->find(key.s)) return *v;
  if ((obj.is_sequence() || obj.is_string()) && (key.kind == Kind::integer || key.kind == Kind::boolean)) {
    int64_t i = int_of(key);
    if (obj.is_string()) {
      const std::vector<std::string_view> chars = code_points(obj.s);
      const auto n = static_cast<int64_t>(chars.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::string(std::string(chars[static_cast<size_t>(i)]));
    } else {
      const auto n = static_cast<int64_t>(obj.list->size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return (*obj.list)[static_cast<size_t>(i)];
    }
    return Value::undefined(object_name(obj) + " has no element " + repr(key));
  }
  if (key.is_string()) return get_attr(obj, key.s);
  return Value::undefined(object_name(obj) + " has no element " + repr(key));
}

Value Interpreter::eval_slice(const Expr& e, const std::shared_ptr<Scope>& scope) {
  const Value obj = eval(*e.args[0], scope);
  Value parts[3];
  for (int k = 0; k < 3; ++k) {
    parts[k] = e.args[k + 1] ? eval(*e.args[k + 1], scope) : Value::none();
    if (!parts[k].is_none() && !is_int(parts[k]))
      fail("slice indices must be integers or None, not " + py_type(parts[k]));
  }
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_string()) {
    const std::vector<std::string_view> chars = code_points(obj.s);
    std::string out;
    for (size_t i : slice_indices(chars.size(), parts[0], parts[1], parts[2])) out += chars[i];
    return Value::string(std::move(out));
  }
  if (!obj.is_sequence() || obj.generator) fail("'" + py_type(obj) + "' object is not subscriptable");
  List out;
  for (size_t i : slice_indices(obj.list->size(), parts[0], parts[1], parts[2])) out.push_back((*obj.list)[i]);
  return Value::make_list(std::move(out), obj.kind == Kind::tuple);
}

Value Interpreter::eval_filter(const Expr& e, const std::shared_ptr<Scope>& scope, const Value* input) {
  if (e.kind != Expr::Kind::filter) return eval(e, scope);
  const Value value = !e.args[0] ? *input
                      : e.args[0]->kind == Expr::Kind::filter ? eval_filter(*e.args[0], scope, input)
                                                              : eval(*e.args[0], scope);
  CallArgs args = eval_args(e, scope, 1);
  return filter(e.name, value, args);
}

Value Interpreter::eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope) {
  Value a = eval(*e.args[0], scope);
  if (e.name == "and") return a.truthy() ? eval(*e.args[1], scope) : a;
  if (e.name == "or") return a.truthy() ? a : eval(*e.args[1], scope);
  const Value b = eval(*e.args[1], scope);
  Value r = binary_op(e.name, a, b);
  if (r.is_string()) check_size(r.s.size());
  return r;
}

Value Interpreter::eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope) {
  Value left = eval(*e.args[0], scope);
  for (size_t k = 0; k < e.ops.size(); ++k) {
    Value right = eval(*e.args[k + 1], scope);
    const std::string& op = e.ops[k];
    bool r;
    if (op == "==") {
      r = equals(left, right);
    } else if (op == "!=") {
      r = !equals(left, right);
    } else if (op == "<") {
      r = less(left, right);
    } else if (op == ">") {
      r = less(right, left);
    } else if (op == "<=") {
      r = less(left, right) || equals(left, right);
    } else if (op == ">=") {
      r = less(right, left) || equals(left, right);
    } else if (op == "in") {
      r = contains(right, left);
    } else {
      r = !contains(right, left);
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  const Depth depth(this);
  switch (e.kind) {
    case Expr::Kind::literal: return e.value;
    case Expr::Kind::name: {
      const Value* v = scope->lookup(e.name);
      return v ? *v : Value::undefined("'" + e.name + "' is undefined");
    }
    case Expr::Kind::list:
    case Expr::Kind::tuple: {
      List items;
      for (const ExprPtr& a : e.args) items.push_back(eval(*a, scope));
      return Value::make_list(std::move(items), e.kind == Expr::Kind::tuple);
    }
    case Expr::Kind::dict: {
      auto d = std::make_shared<Dict>();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        const Value key = eval(*e.args[k], scope);
        if (!key.is_string()) fail("dict keys must be strings here, got " + py_type(key));
        d->set(key.s, eval(*e.args[k + 1], scope));
      }
      return Value::make_dict(std::move(d));
    }
    case Expr::Kind::attr: return get_attr(eval(*e.args[0], scope), e.name);
    case Expr::Kind::item: {
      const Value obj = eval(*e.args[0], scope);
      return get_item(obj, eval(*e.args[1], scope));
    }
    case Expr::Kind::slice: return eval_slice(e, scope);
    case Expr::Kind::call: {
      const Value callee = eval(*e.args[0], scope);
      CallArgs args = eval_args(e, scope, 1);
      return call(callee, args);
    }
    case Expr::Kind::filter: return eval_filter(e, scope, nullptr);
    case Expr::Kind::test: {
      const Value v = eval(*e.args[0], scope);
      CallArgs args = eval_args(e, scope, 1);
      return Value::boolean(test(e.name, v, args) != e.negated);
    }
    case Expr::Kind::unary: {
      const Value v = eval(*e.args[0], scope);
      if (e.name == "not") return Value::boolean(!v.truthy());
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_number()) fail("bad operand type for unary " + e.name + ": '" + py_type(v) + "'");
      if (e.name == "+") return v.kind == Kind::boolean ? Value::integer(v.b) : v;
      if (v.kind == Kind::floating) return Value::floating(-v.f);
      if (int_of(v) == INT64_MIN) fail("integer overflow");
      return Value::integer(-int_of(v));
    }
    case Expr::Kind::binary: return eval_binary(e, scope);
    case Expr::Kind::compare: return eval_compare(e, scope);
    case Expr::Kind::condition:
      if (eval(*e.args[0], scope).truthy()) return eval(*e.args[1], scope);
      return e.args[2] ? eval(*e.args[2], scope) : Value::undefined("the inline if expression evaluated to false and no else section was defined.");
  }
  return Value();
}

Value Interpreter::filter(const std::string& name, const Value& input, CallArgs& args) {
  return apply_filter(*this, name, input, args);
}

bool Interpreter::test(const std::string& name, const Value& input, CallArgs& args) {
  return apply_test(*this, name, input, args);
}

}  // namespace kestrel::jinja
