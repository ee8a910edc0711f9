// The Jinja engine against jinja2 (tests/fixtures/jinja_cases.json, made by
// tests/fixtures/make_jinja_cases.py): the real chat templates of tests/fixtures/
// chat-templates/ on many conversations and options, and hand-written templates for each
// construct. A case jinja2 renders must match byte for byte; a case it refuses must throw
// Error(invalid_argument) (with jinja2's message for raise_exception, Undefined and the
// sandbox). Then what jinja2 cannot check: the real date, limits on runaway templates,
// bad arguments.
#include <gtest/gtest.h>

#include <ctime>
#include <map>

#include <kestrel/chat.h>
#include <kestrel/error.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kestrel {
namespace {

using ojson = nlohmann::ordered_json;

const ojson& cases() {
  static const ojson doc = ojson::parse(testing::read_file(testing::fixture_dir() / "jinja_cases.json"));
  return doc;
}

std::string strftime_at(const std::string& format, const std::tm& when) {
  char buf[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"  // the fixture's formats, as strftime_now takes them
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &when);
#pragma GCC diagnostic pop
  return std::string(buf, n);
}

// strftime_now gave today's date; the fixture has the generator's fixed date in its place.
std::string with_fixed_date(std::string text, const ojson& c) {
  if (!c.contains("date_formats")) return text;
  const std::time_t now = std::time(nullptr);
  std::tm today{};
  localtime_r(&now, &today);
  std::tm fixed{};
  fixed.tm_year = 2026 - 1900;
  fixed.tm_mon = 0;
  fixed.tm_mday = 15;
  fixed.tm_wday = 4;
  fixed.tm_hour = 9;
  fixed.tm_min = 30;
  for (const auto& f : c.at("date_formats")) {
    const std::string from = strftime_at(f.get<std::string>(), today), to = strftime_at(f.get<std::string>(), fixed);
    for (size_t at = text.find(from); !from.empty() && at != std::string::npos; at = text.find(from, at + to.size()))
      text.replace(at, from.size(), to);
  }
  return text;
}

// Renders one case; returns "" when it matched jinja2, else what differed.
std::string check(const std::string& tmpl, const ojson& messages, const ojson& c) {
  ChatTemplateOptions options;
  options.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
  options.extra_context_json = c.at("extra").dump();
  const std::string bos = c.at("bos_token").get<std::string>(), eos = c.at("eos_token").get<std::string>();
  if (!c.at("expected").is_null()) {
    std::string got;
    try {
      got = with_fixed_date(apply_chat_template_json(tmpl, messages.dump(), options, bos, eos), c);
    } catch (const Error& e) {
      return std::string("threw ") + e.what();
    }
    const std::string expected = c.at("expected").get<std::string>();
    if (got == expected) return "";
    size_t at = 0;
    while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
    return "differs at byte " + std::to_string(at) + ": expected '" + expected.substr(at, 80) + "', got '" +
           got.substr(at, 80) + "'";
  }
  try {
    (void)apply_chat_template_json(tmpl, messages.dump(), options, bos, eos);
    return "rendered, jinja2 raised: " + c.at("error").get<std::string>();
  } catch (const Error& e) {
    const std::string kind = c.at("error_kind").get<std::string>();
    const std::string message = c.at("error").get<std::string>();
    if (e.category() != ErrorCategory::invalid_argument) return std::string("wrong category: ") + e.what();
    if ((kind == "raise" || kind == "undefined" || kind == "security") && e.message().find(message) == std::string::npos)
      return "message '" + e.message() + "' lacks jinja2's '" + message + "'";
    return "";
  }
}

TEST(Jinja, RealTemplatesMatchJinja2) {
  const ojson& doc = cases();
  std::map<std::string, std::pair<int, int>> per_template;  // matched, total
  int failures = 0;
  for (const auto& c : doc.at("cases")) {
    const std::string name = c.at("template").get<std::string>();
    const ojson& messages = doc.at("conversations").at(c.at("conversation").get<size_t>());
    const std::string problem = check(doc.at("templates").at(name).get<std::string>(), messages, c);
    auto& [matched, total] = per_template[name];
    ++total;
    if (problem.empty()) {
      ++matched;
    } else if (++failures <= 20) {
      ADD_FAILURE() << name << ", conversation " << c.at("conversation") << ", extra " << c.at("extra").dump().substr(0, 80)
                    << ", add_generation_prompt " << c.at("add_generation_prompt") << ": " << problem;
    }
  }
  EXPECT_GE(per_template.size(), 50u);
  EXPECT_GE(doc.at("cases").size(), 3800u);
  for (const auto& [name, counts] : per_template)
    EXPECT_EQ(counts.first, counts.second) << name << ": " << counts.first << " of " << counts.second << " match";
}

TEST(Jinja, EngineConstructsMatchJinja2) {
  const ojson& doc = cases();
  ASSERT_GE(doc.at("engine_cases").size(), 60u);
  for (const auto& c : doc.at("engine_cases")) {
    const std::string problem = check(c.at("template_text").get<std::string>(), c.at("messages"), c);
    EXPECT_EQ(problem, "") << c.at("name").get<std::string>();
  }
}

std::string render(const std::string& tmpl, const std::string& extra = "{}") {
  ChatTemplateOptions options;
  options.extra_context_json = extra;
  return apply_chat_template_json(tmpl, "[]", options);
}

ErrorCategory category_of(const std::string& tmpl, std::string* message = nullptr) {
  try {
    (void)render(tmpl);
  } catch (const Error& e) {
    if (message) *message = e.message();
    return e.category();
  }
  ADD_FAILURE() << "expected an Error from " << tmpl;
  return ErrorCategory::internal;
}

TEST(Jinja, StrftimeNowIsTheLocalDate) {
  const std::time_t before = std::time(nullptr);
  const std::string got = render("{{ strftime_now('%Y-%m-%d|%d %b %Y|%B') }}");
  const std::time_t after = std::time(nullptr);
  std::tm a{}, b{};
  localtime_r(&before, &a);
  localtime_r(&after, &b);
  const std::string fmt = "%Y-%m-%d|%d %b %Y|%B";
  EXPECT_TRUE(got == strftime_at(fmt, a) || got == strftime_at(fmt, b)) << got;
}

TEST(Jinja, RunawayTemplatesHitLimits) {
  std::string message;
  // Nested loops over the sandbox's largest range: 10^10 steps.
  EXPECT_EQ(category_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &message),
            ErrorCategory::limit);
  EXPECT_NE(message.find("steps"), std::string::npos) << message;
  // Doubling a string: the output bound.
  EXPECT_EQ(category_of("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                        "{% endfor %}{{ ns.s }}", &message),
            ErrorCategory::limit);
  // Unbounded recursion.
  EXPECT_EQ(category_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", &message), ErrorCategory::limit);
  EXPECT_NE(message.find("macro"), std::string::npos) << message;
  // Deeply nested expressions and blocks: a syntax error, not a stack overflow.
  EXPECT_EQ(category_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
            ErrorCategory::invalid_argument);
  std::string nested;
  for (int i = 0; i < 3000; ++i) nested += "{% if true %}";
  EXPECT_EQ(category_of(nested), ErrorCategory::invalid_argument);
  EXPECT_EQ(category_of("{{ range(1000000) }}", &message), ErrorCategory::invalid_argument);
  EXPECT_NE(message.find("MAX_RANGE"), std::string::npos) << message;
  EXPECT_EQ(category_of("{{ 'x' * 100000000000 }}"), ErrorCategory::invalid_argument);
  EXPECT_EQ(render("{{ '' * 9223372036854775807 }}|{{ [1, 2, 3][::9223372036854775807] }}"), "|[1]");
  // A namespace that holds itself, printed; a conversation nested 100,000 deep.
  EXPECT_EQ(category_of("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}"), ErrorCategory::invalid_argument);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_THROW(apply_chat_template_json("{{ messages }}", deep), Error);
  // Recursion through macros and deep expressions at once: the nesting bound.
  std::string nested_macro = "{% macro f(n) %}{{ f(n + 1) if n < 40 else 0 }}" + std::string(60, '(') + "1" +
                             std::string(60, ')') + "{% endmacro %}{{ f(0) }}";
  EXPECT_NO_THROW((void)render(nested_macro));
  EXPECT_EQ(category_of("{{ 9223372036854775807 + 1 }}"), ErrorCategory::invalid_argument);
}

TEST(Jinja, SyntaxErrorsNameLineAndExpectation) {
  std::string message;
  EXPECT_EQ(category_of("line one\n{% if true %}\n{{ 1 + }}", &message), ErrorCategory::invalid_argument);
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_EQ(category_of("{% for x in xs %}never closed", &message), ErrorCategory::invalid_argument);
  EXPECT_NE(message.find("endfor"), std::string::npos) << message;
  EXPECT_EQ(category_of("{% include 'other.jinja' %}", &message), ErrorCategory::unsupported);
  EXPECT_NE(message.find("include"), std::string::npos) << message;
  EXPECT_EQ(category_of("{{ x }", &message), ErrorCategory::invalid_argument);
}

TEST(Jinja, RuntimeErrorsNameTheLine) {
  std::string message;
  EXPECT_EQ(category_of("a\nb\n{{ raise_exception('stop here') }}", &message), ErrorCategory::invalid_argument);
  EXPECT_NE(message.find("line 3: stop here"), std::string::npos) << message;
  EXPECT_EQ(category_of("{{ missing.field }}", &message), ErrorCategory::invalid_argument);
  EXPECT_NE(message.find("'missing' is undefined"), std::string::npos) << message;
}

TEST(Jinja, ExtraContextAndMessagesJson) {
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  options.extra_context_json = R"({"enable_thinking": false, "bos_token": "<B>", "n": 2.50})";
  EXPECT_EQ(apply_chat_template_json("{{ bos_token }}{{ enable_thinking }}{{ n }}{{ add_generation_prompt }}"
                                     "{{ messages[0].tool_calls[0].function.name }}{{ tools is none }}",
                                     R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}])", options),
            "<B>False2.5FalsefTrue");
  options.extra_context_json = "[1]";
  EXPECT_THROW(apply_chat_template_json("x", "[]", options), Error);
  options.extra_context_json = "{";
  EXPECT_THROW(apply_chat_template_json("x", "[]", options), Error);
  options.extra_context_json = "";
  EXPECT_THROW(apply_chat_template_json("x", R"({"role": "user"})", options), Error);
  EXPECT_THROW(apply_chat_template_json("x", "not json", options), Error);
}

}  // namespace
}  // namespace kestrel
