// Loads a model through the installed public headers and generates a few tokens.
#include <iostream>
#include <kestrel/kestrel.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer MODEL_DIR\n";
    return 2;
  }
  try {
    auto model = kestrel::Model::load(argv[1]);
    kestrel::Session session(model, {.max_sequences = 1});
    kestrel::Decoder decoder(session);
    kestrel::GenerationRequest request;
    request.prompt = "Hello";
    request.stop.max_new_tokens = 5;
    request.stop.stop_at_eos = false;
    auto result = decoder.generate(request);
    std::cout << "generated " << result.tokens.size() << " tokens: " << result.text << "\n";
    return result.tokens.size() == 5 ? 0 : 1;
  } catch (const kestrel::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
