// apply_chat_template against jinja2 rendering the real templates (tests/fixtures/
// chat_templates.json, made by tests/fixtures/make_chat_cases.py): SmolLM2's ChatML template
// with its default system message, plain ChatML, Llama 3, Llama 2, Mistral v0.2 and Gemma
// 1 / 2 (with what they raise), rendered by the Jinja engine (tests/unit/jinja_test.cc
// covers the engine and many more templates).
#include <gtest/gtest.h>

#include <kestrel/chat.h>
#include <kestrel/error.h>
#include <kestrel/model.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;

json chat_cases() {
  return json::parse(testing::read_file(testing::fixture_dir() / "chat_templates.json"));
}

std::vector<ChatMessage> messages_of(const json& list) {
  std::vector<ChatMessage> out;
  for (const auto& m : list) out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  return out;
}

TEST(ChatTemplate, MatchesJinjaOnEveryFixtureCase) {
  const json doc = chat_cases();
  ASSERT_GE(doc.at("cases").size(), 40u);
  for (const auto& c : doc.at("cases")) {
    const std::string name = c.at("template").get<std::string>();
    const std::string tmpl = doc.at("templates").at(name).get<std::string>();
    const std::vector<ChatMessage> messages = messages_of(c.at("messages"));
    const bool add_generation_prompt = c.at("add_generation_prompt").get<bool>();
    const std::string bos = c.at("bos_token").get<std::string>();
    const std::string eos = c.at("eos_token").get<std::string>();
    const std::string where =
        name + " with " + std::to_string(messages.size()) + " messages, add_generation_prompt " +
        std::to_string(add_generation_prompt);
    if (c.at("expected").is_null()) {  // the template raises: Kestrel throws what it raises
      try {
        (void)apply_chat_template(tmpl, messages, add_generation_prompt, bos, eos);
        ADD_FAILURE() << where << ": expected Error";
      } catch (const Error& e) {
        EXPECT_EQ(e.category(), ErrorCategory::invalid_argument) << where;
        EXPECT_NE(e.message().find(c.at("error").get<std::string>()), std::string::npos) << where << ": " << e.message();
      }
      continue;
    }
    EXPECT_EQ(apply_chat_template(tmpl, messages, add_generation_prompt, bos, eos), c.at("expected").get<std::string>())
        << where;
  }
}

TEST(ChatTemplate, SmolLM2DefaultSystemMessageComesFromTheTemplate) {
  const std::string tmpl = chat_cases().at("templates").at("smollm2").get<std::string>();
  const ChatMessage question{"user", "Hi"};
  const std::string out = apply_chat_template(tmpl, std::span(&question, 1));
  EXPECT_TRUE(out.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                              "Hugging Face<|im_end|>\n"))
      << out;
}

// Templates of families the old recognizer refused now render through the engine; only
// an empty template is unsupported.
TEST(ChatTemplate, AnyTemplateRendersAndEmptyIsUnsupported) {
  const ChatMessage m{"user", "Hi"};
  const std::string gemma =
      "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n{{ message['content'] }}"
      "<end_of_turn>\n{% endfor %}";
  EXPECT_EQ(apply_chat_template(gemma, std::span(&m, 1), true, "<bos>"), "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  try {
    apply_chat_template("", std::span(&m, 1));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported);
    EXPECT_NE(e.message().find("none"), std::string::npos) << e.message();
  }
  const std::string llama31 =
      "{{- bos_token }}{%- set date_string = \"26 Jul 2024\" %}{{- \"<|start_header_id|>system<|end_header_id|>"
      "\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}";
  EXPECT_EQ(apply_chat_template(llama31, std::span(&m, 1), true, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n");
}

// A model without a template (tiny-gpt2.gguf has none) names its file in the error.
TEST(ChatTemplate, ModelWithoutTemplateNamesTheModel) {
  auto model = Model::load(testing::fixture_dir() / "tiny-gpt2.gguf");
  EXPECT_TRUE(model->chat_template().empty());
  const ChatMessage m{"user", "Hi"};
  try {
    apply_chat_template(*model, std::span(&m, 1));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported);
    EXPECT_NE(e.message().find("tiny-gpt2.gguf"), std::string::npos) << e.message();
  }
}

// tiny-llama.gguf carries a plain ChatML template; its tokenizer has no <|im_start|> token,
// so the markers are ordinary text, and it adds no BOS.
TEST(ChatTemplate, ModelTemplateFromGgufRendersAndEncodes) {
  auto model = Model::load(testing::fixture_dir() / "tiny-llama.gguf");
  const std::vector<ChatMessage> messages{{"user", "Once upon a time"}};
  const std::string text = apply_chat_template(*model, messages);
  EXPECT_EQ(text, "<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(encode_chat(*model, text), model->tokenizer().encode(text));
  // With options: no generation prompt; a bad extra context names the model and the field.
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  options.extra_context_json = R"({"enable_thinking": false})";
  EXPECT_EQ(apply_chat_template(*model, messages, options), "<|im_start|>user\nOnce upon a time<|im_end|>\n");
  EXPECT_EQ(apply_chat_template_json(*model, R"([{"role": "user", "content": "Once upon a time"}])", options),
            "<|im_start|>user\nOnce upon a time<|im_end|>\n");
  options.extra_context_json = "{not json";
  try {
    (void)apply_chat_template(*model, messages, options);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("tiny-llama.gguf"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("extra_context_json"), std::string::npos) << e.message();
  }
}

// A Hugging Face directory: chat_template from tokenizer_config.json, as a string or as
// the list form newer transformers writes.
TEST(ChatTemplate, ModelTemplateFromHfTokenizerConfig) {
  const std::filesystem::path src = testing::fixture_dir() / "tiny-llama";
  const json doc = chat_cases();
  const std::string chatml = doc.at("templates").at("chatml").get<std::string>();
  const std::vector<json> configs{
      {{"chat_template", chatml}},
      {{"chat_template", json::array({{{"name", "tool_use"}, {"template", "x"}},
                                      {{"name", "default"}, {"template", chatml}}})}}};
  for (size_t i = 0; i < configs.size(); ++i) {
    const auto dir = testing::temp_dir("hf_chat_" + std::to_string(i));
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
      std::filesystem::copy_file(src / f, dir / f);
    testing::write_file(dir / "tokenizer_config.json", configs[i].dump());
    auto model = Model::load(dir);
    EXPECT_EQ(model->chat_template(), chatml) << i;
    const std::vector<ChatMessage> messages{{"user", "Hi"}};
    EXPECT_EQ(apply_chat_template(*model, messages), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  }
  EXPECT_TRUE(Model::load(src)->chat_template().empty());
}

}  // namespace
}  // namespace kestrel
