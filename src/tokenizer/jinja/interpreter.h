// Runs a parsed template against a context, as jinja2 renders it: scopes (a for loop's
// body gets a fresh scope each iteration, macros their own, if blocks none), the loop
// object, macros and call blocks, Undefined, and guards against runaway templates.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "tokenizer/jinja/ast.h"

namespace kestrel::jinja {

// Bounds that turn a runaway template into a clear Error(limit) instead of a hang or an
// exhausted memory.
struct RenderLimits {
  size_t max_output_bytes = size_t{32} << 20;  // the rendered text and any string built on the way
  size_t max_steps = 2'000'000;                // statements run plus loop iterations
  int max_call_depth = 48;                     // nested macro calls
  int max_nesting = 2000;                      // statements and expressions being evaluated at once (the C++ stack)
};

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* lookup(const std::string& name) const;
};

class Interpreter {
 public:
  explicit Interpreter(RenderLimits limits) : limits_(limits) {}

  // `context` is a dict whose items become the template's variables (over the globals:
  // range, namespace, dict, cycler, joiner, raise_exception, strftime_now). Errors are
  // Error(invalid_argument) or Error(limit) prefixed with "line N: ".
  std::string render(const Body& body, const Value& context);

  // What builtins need: calls, filters and tests by name, jinja2's getattr / getitem.
  Value call(const Value& callee, CallArgs& args);
  Value filter(const std::string& name, const Value& input, CallArgs& args);
  bool test(const std::string& name, const Value& input, CallArgs& args);
  Value get_attr(const Value& obj, const std::string& name);
  Value get_item(const Value& obj, const Value& key);
  // Throws Error(limit) when a string of `bytes` would pass the output bound.
  void check_size(size_t bytes) const;
  void step();
  // A namespace() object; render() empties them all at the end, which breaks the cycles
  // a namespace holding itself (or a list holding it) would leave.
  std::shared_ptr<Dict> new_namespace();

 private:
  enum class Flow { normal, break_, continue_ };
  Flow exec(const Body& body, const std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec(const Node& node, const std::shared_ptr<Scope>& scope, std::string& out);
  void exec_for(const Node& node, const std::shared_ptr<Scope>& scope, std::string& out);
  void exec_set(const Node& node, const std::shared_ptr<Scope>& scope);
  Value make_macro(const Node& node, const std::shared_ptr<Scope>& scope, const Body* body);
  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_filter(const Expr& e, const std::shared_ptr<Scope>& scope, const Value* input);
  Value eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_slice(const Expr& e, const std::shared_ptr<Scope>& scope);
  CallArgs eval_args(const Expr& e, const std::shared_ptr<Scope>& scope, size_t first);

  // Counts the statements and expressions under evaluation (RenderLimits::max_nesting).
  struct Depth {
    explicit Depth(Interpreter* in);
    ~Depth() { --in_->depth_; }
    Interpreter* in_;
  };

  RenderLimits limits_;
  size_t steps_ = 0;
  int depth_ = 0;
  std::vector<std::shared_ptr<Dict>> namespaces_;
  int call_depth_ = 0;
  int line_ = 0;
};

// Python operators on values (interpreter.cc), shared with the filters.
Value binary_op(const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
// The items a for loop visits: a list's items, a dict's keys, a string's characters.
List iterate(const Value& v);

}  // namespace kestrel::jinja
