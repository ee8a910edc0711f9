// A recursive-descent parser mirroring jinja2's Parser method by method, so that
// precedence and the places where a bare `if` or `else` ends an expression agree.
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "kestrel/error.h"
#include "tokenizer/jinja/lexer.h"

namespace kestrel::jinja {
namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and statements

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, &end);
    if (peek().type != Tok::eof) fail("unexpected tag");
    return body;
  }

 private:
  // --- token stream ---
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == Tok::op && peek(ahead).text == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).type == Tok::name && peek(ahead).text == name;
  }
  bool skip_op(const char* op) { return is_op(op) ? (next(), true) : false; }
  bool skip_name(const char* name) { return is_name(name) ? (next(), true) : false; }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::text: return "template data";
      case Tok::var_begin: return "'{{'";
      case Tok::var_end: return "end of print statement";
      case Tok::block_begin: return "'{%'";
      case Tok::block_end: return "end of statement block";
      case Tok::string: return "string";
      case Tok::integer: return "integer";
      case Tok::floating: return "float";
      case Tok::eof: return "end of template";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCategory::invalid_argument, "syntax error at line " + std::to_string(peek().line) + ": " +
                                                     what + " (found " + describe(peek()) + ")");
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "'");
  }
  std::string expect_name() {
    if (peek().type != Tok::name) fail("expected a name");
    return next().text;
  }
  void expect_block_end() {
    if (peek().type != Tok::block_end) fail("expected end of statement block");
    next();
  }

  struct DepthGuard {
    explicit DepthGuard(Parser* p) : parser(p) {
      if (++parser->depth_ > kMaxDepth) parser->fail("the template nests too deeply");
    }
    ~DepthGuard() { --parser->depth_; }
    Parser* parser;
  };

  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // --- statements ---

  // Nodes up to a {% name %} tag with a name in `ends` (left unconsumed but for the
  // "{%" and the name, which goes to *end) or the end of the template.
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    DepthGuard guard(this);
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == Tok::eof) {
        if (ends.size() != 0)
          fail(std::string("unexpected end of template, expected '") + *ends.begin() + "'");
        return body;
      }
      if (t.type == Tok::text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::text;
        n->line = t.line;
        n->text = next().text;
        body.push_back(std::move(n));
      } else if (t.type == Tok::var_begin) {
        next();
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::output;
        n->line = t.line;
        n->expr = parse_tuple(true, {});
        if (peek().type != Tok::var_end) fail("expected end of print statement");
        next();
        body.push_back(std::move(n));
      } else if (t.type == Tok::block_begin) {
        const Token& name = peek(1);
        if (name.type == Tok::name &&
            std::any_of(ends.begin(), ends.end(), [&](const char* e) { return name.text == e; })) {
          next();
          *end = next().text;
          return body;
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail("unexpected token");
      }
    }
  }

  NodePtr parse_statement() {
    const Token& t = peek();
    if (t.type != Tok::name) fail("tag name expected");
    const std::string tag = t.text;
    const int line = t.line;
    auto n = std::make_unique<Node>();
    n->line = line;
    if (tag == "if") return next(), parse_if(std::move(n));
    if (tag == "for") return next(), parse_for(std::move(n));
    if (tag == "set") return next(), parse_set(std::move(n));
    if (tag == "macro") return next(), parse_macro(std::move(n));
    if (tag == "call") return next(), parse_call_block(std::move(n));
    if (tag == "filter") return next(), parse_filter_block(std::move(n));
    if (tag == "break" || tag == "continue") {
      next();
      n->kind = tag == "break" ? Node::Kind::break_ : Node::Kind::continue_;
      expect_block_end();
      return n;
    }
    if (tag == "generation") {
      next();
      expect_block_end();
      n->kind = Node::Kind::body;
      std::string end;
      n->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
      return n;
    }
    if (tag == "extends" || tag == "block" || tag == "include" || tag == "import" || tag == "from")
      throw Error(ErrorCategory::unsupported, "line " + std::to_string(line) + ": '" + tag +
                                                  "' is not supported in a chat template (it loads other templates)");
    fail("encountered unknown tag '" + tag + "'");
  }

  NodePtr parse_if(NodePtr n) {
    n->kind = Node::Kind::if_;
    while (true) {
      ExprPtr cond = parse_tuple(false, {});
      expect_block_end();
      std::string end;
      Body body = parse_body({"elif", "else", "endif"}, &end);
      n->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") continue;
      if (end == "else") {
        expect_block_end();
        n->else_body = parse_body({"endif"}, &end);
      }
      expect_block_end();
      return n;
    }
  }

  // Names, possibly a tuple of them ("k, v" or "(k, v)"), ending before `stop`.
  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    const bool paren = skip_op("(");
    do {
      names.push_back(expect_name());
    } while (skip_op(",") && peek().type == Tok::name);
    if (paren) expect_op(")");
    return names;
  }

  NodePtr parse_for(NodePtr n) {
    n->kind = Node::Kind::for_;
    n->targets = parse_targets();
    if (!skip_name("in")) fail("expected 'in'");
    n->expr = parse_tuple(false, {"recursive"});
    if (skip_name("if")) n->cond = parse_expression(true);
    if (skip_name("recursive")) n->recursive = true;
    expect_block_end();
    std::string end;
    n->body = parse_body({"endfor", "else"}, &end);
    if (end == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"}, &end);
    }
    expect_block_end();
    if (n->recursive)
      throw Error(ErrorCategory::unsupported, "line " + std::to_string(n->line) + ": recursive loops are not supported");
    return n;
  }

  NodePtr parse_set(NodePtr n) {
    if (peek().type == Tok::name && is_op(".", 1)) {
      n->ns_attr = true;
      n->targets.push_back(next().text);
      next();
      n->targets.push_back(expect_name());
    } else {
      n->targets = parse_targets();
    }
    if (skip_op("=")) {
      n->kind = Node::Kind::set;
      n->expr = parse_tuple(true, {});
      expect_block_end();
      return n;
    }
    if (n->ns_attr || n->targets.size() != 1) fail("expected '='");
    n->kind = Node::Kind::set_block;
    n->text = n->targets[0];
    if (is_op("|")) n->expr = parse_filters(nullptr);
    expect_block_end();
    std::string end;
    n->body = parse_body({"endset"}, &end);
    expect_block_end();
    return n;
  }

  std::vector<Param> parse_params() {
    std::vector<Param> params;
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      if (is_op(")")) break;
      Param p;
      p.name = expect_name();
      if (skip_op("=")) p.default_value = parse_expression(true);
      params.push_back(std::move(p));
    }
    next();
    return params;
  }

  NodePtr parse_macro(NodePtr n) {
    n->kind = Node::Kind::macro;
    n->text = expect_name();
    n->params = parse_params();
    expect_block_end();
    std::string end;
    n->body = parse_body({"endmacro"}, &end);
    if (peek().type == Tok::name) next();  // {% endmacro name %}
    expect_block_end();
    return n;
  }

  NodePtr parse_call_block(NodePtr n) {
    n->kind = Node::Kind::call_block;
    if (is_op("(")) n->params = parse_params();
    n->expr = parse_expression(true);
    if (n->expr->kind != Expr::Kind::call) fail("expected a call");
    expect_block_end();
    std::string end;
    n->body = parse_body({"endcall"}, &end);
    expect_block_end();
    return n;
  }

  NodePtr parse_filter_block(NodePtr n) {
    n->kind = Node::Kind::filter_block;
    n->expr = parse_filters(nullptr, /*first_without_pipe=*/true);
    expect_block_end();
    std::string end;
    n->body = parse_body({"endfilter"}, &end);
    expect_block_end();
    return n;
  }

  // --- expressions ---

  bool is_tuple_end(std::initializer_list<const char*> extra_ends) const {
    const Token& t = peek();
    if (t.type == Tok::var_end || t.type == Tok::block_end || t.type == Tok::eof) return true;
    if (t.type == Tok::op && (t.text == ")" || t.text == "]" || t.text == "}")) return true;
    return t.type == Tok::name &&
           std::any_of(extra_ends.begin(), extra_ends.end(), [&](const char* e) { return t.text == e; });
  }

  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> extra_ends,
                      bool explicit_parentheses = false) {
    const int line = peek().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_ends)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail("expected an expression");
    }
    auto e = make(Expr::Kind::tuple, line);
    e->args = std::move(items);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    DepthGuard guard(this);
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      const int line = next().line;
      auto cond = make(Expr::Kind::condition, line);
      cond->args.push_back(parse_or());
      cond->args.push_back(std::move(expr));
      cond->args.push_back(skip_name("else") ? parse_condexpr() : nullptr);
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr binary(const std::string& op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(Expr::Kind::binary, line);
    e->name = op;
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const int line = next().line;
      left = binary("or", std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const int line = next().line;
      left = binary("and", std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    DepthGuard guard(this);
    if (is_name("not")) {
      auto e = make(Expr::Kind::unary, next().line);
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().type == Tok::op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                     peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      left = binary(t.text, std::move(left), parse_concat(), t.line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const int line = next().line;
      left = binary("~", std::move(left), parse_math2(), line);
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      left = binary(t.text, std::move(left), parse_pow(), t.line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      left = binary("**", std::move(left), parse_unary(true), line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      node = make(Expr::Kind::unary, t.line);
      node->name = t.text;
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    DepthGuard guard(this);
    const Token& t = peek();
    switch (t.type) {
      case Tok::name: {
        next();
        auto e = make(Expr::Kind::literal, t.line);
        if (t.text == "true" || t.text == "True") {
          e->value = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::Kind::name;
          e->name = t.text;
        }
        return e;
      }
      case Tok::string: {
        auto e = make(Expr::Kind::literal, t.line);
        std::string s;
        while (peek().type == Tok::string) s += next().text;
        e->value = Value::string(std::move(s));
        return e;
      }
      case Tok::integer:
      case Tok::floating: {
        next();
        auto e = make(Expr::Kind::literal, t.line);
        try {
          e->value = t.type == Tok::integer ? Value::integer(std::stoll(t.text)) : Value::floating(std::stod(t.text));
        } catch (const std::exception&) {
          fail("number literal out of range");
        }
        return e;
      }
      case Tok::op:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, {}, /*explicit_parentheses=*/true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    auto e = make(Expr::Kind::list, next().line);
    while (!is_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("]")) break;
      e->args.push_back(parse_expression(true));
    }
    next();
    return e;
  }

  ExprPtr parse_dict() {
    auto e = make(Expr::Kind::dict, next().line);
    while (!is_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("}")) break;
      e->args.push_back(parse_expression(true));
      expect_op(":");
      e->args.push_back(parse_expression(true));
    }
    next();
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        const int line = next().line;
        if (peek().type == Tok::integer) {
          auto e = make(Expr::Kind::item, line);
          e->args.push_back(std::move(node));
          auto index = make(Expr::Kind::literal, line);
          try {
            index->value = Value::integer(std::stoll(peek().text));
          } catch (const std::exception&) {
            fail("number literal out of range");
          }
          next();
          e->args.push_back(std::move(index));
          node = std::move(e);
        } else {
          auto e = make(Expr::Kind::attr, line);
          e->name = expect_name();
          e->args.push_back(std::move(node));
          node = std::move(e);
        }
      } else if (is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = next().line;
    std::vector<ExprPtr> parts;  // start, stop, step
    bool is_slice = false;
    for (int k = 0; k < 3; ++k) {
      if (k > 0) {
        if (!skip_op(":")) break;
        is_slice = true;
      }
      parts.push_back(is_op(":") || is_op("]") ? nullptr : parse_expression(true));
    }
    if (is_op(",")) fail("tuple subscripts are not supported");
    expect_op("]");
    auto e = make(is_slice ? Expr::Kind::slice : Expr::Kind::item, line);
    e->args.push_back(std::move(node));
    if (!is_slice && !parts[0]) fail("expected an index");
    for (auto& p : parts) e->args.push_back(std::move(p));
    if (is_slice) e->args.resize(4);
    return e;
  }

  // "(" args ")" into e->args (after the callee or filtered value) and e->kwargs.
  void parse_call_args(Expr* e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (peek().type == Tok::name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        e->kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e->kwargs.empty()) fail("positional argument after keyword argument");
        e->args.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::call, peek().line);
    e->args.push_back(std::move(callee));
    parse_call_args(e.get());
    return e;
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (is_op(".") && peek(1).type == Tok::name) {
      next();
      name += "." + next().text;
    }
    return name;
  }

  // `| name(args)` ... applied to `node` (null inside {% filter %} and {% set x | f %}).
  ExprPtr parse_filters(ExprPtr node, bool first_without_pipe = false) {
    while (first_without_pipe || is_op("|")) {
      if (!first_without_pipe) next();
      first_without_pipe = false;
      auto e = make(Expr::Kind::filter, peek().line);
      e->name = dotted_name();
      e->args.push_back(std::move(node));
      if (is_op("(")) parse_call_args(e.get());
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filters(std::move(node));
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_test(ExprPtr node) {
    auto e = make(Expr::Kind::test, next().line);
    e->negated = skip_name("not");
    e->name = dotted_name();
    e->args.push_back(std::move(node));
    const Token& t = peek();
    if (is_op("(")) {
      parse_call_args(e.get());
    } else if ((t.type == Tok::name || t.type == Tok::string || t.type == Tok::integer || t.type == Tok::floating ||
                is_op("[") || is_op("{")) &&
               !(t.type == Tok::name && (t.text == "else" || t.text == "or" || t.text == "and"))) {
      if (is_name("is")) fail("You cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    return e;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse(std::string_view source) { return Parser(tokenize(source)).parse_template(); }

}  // namespace kestrel::jinja
