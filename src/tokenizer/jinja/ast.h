// The syntax tree of a parsed template: expressions and statements as jinja2's parser
// builds them (jinja2/nodes.py), reduced to what the interpreter needs.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace kestrel::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,   // value
    name,      // name
    list,      // args
    tuple,     // args
    dict,      // kwargs-like: keys in args[2k], values in args[2k+1]
    attr,      // args[0].name
    item,      // args[0][args[1]]
    slice,     // args[0][args[1]:args[2]:args[3]] (null parts are absent)
    call,      // args[0](args[1..], kwargs)
    filter,    // args[0] | name(args[1..], kwargs); args[0] null inside {% filter %}
    test,      // args[0] is [not] name(args[1..], kwargs); negated
    unary,     // op args[0]: "-", "+", "not"
    binary,    // args[0] op args[1]: + - * / // % ** ~ and or
    compare,   // args[0] ops[0] args[1] ops[1] args[2] ... (chained, as Python)
    condition  // args[1] if args[0] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;  // name, attribute, filter, test, or operator
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

// A macro's (or call block's) parameter with its default.
struct Param {
  std::string name;
  ExprPtr default_value;  // null: none
};

struct Node {
  enum class Kind {
    text,          // text
    output,        // {{ expr }}
    if_,           // branches: (cond, body)...; else_body
    for_,          // targets in expr [if cond]; body; else_body
    set,           // targets (names) or target ns.attr (ns_attr) = expr
    set_block,     // {% set name %}body{% endset %}, filtered by expr (a filter chain) when present
    macro,         // name(params) body
    call_block,    // {% call(params) expr %}body{% endcall %}
    filter_block,  // {% filter expr %}body{% endfilter %}
    break_,
    continue_,
    body           // a plain sequence ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;                  // text; macro and set_block name
  ExprPtr expr;                      // output, for iterable, set value, call, filter chain
  ExprPtr cond;                      // for's inline filter
  std::vector<std::string> targets;  // for / set targets; set ns.attr: {ns, attr} with ns_attr
  bool ns_attr = false;
  bool recursive = false;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<Param> params;
};

}  // namespace kestrel::jinja
