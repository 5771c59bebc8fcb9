// `kvforge tokenize`: the token ids of a text, as the model's tokenizer sees it.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "frontend/command.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string file;
  bool no_bos = false;
  bool no_special = false;
  bool pieces = false;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run_tokenize(const TokenizeOptions& o) {
  const std::string text = o.file.empty() ? o.prompt : read_file(o.file);
  auto gguf_file = gguf::File::open(resolve_model_path(o.model));
  auto tok = Tokenizer::from_gguf(*gguf_file);
  std::vector<TokenId> ids = tok->encode(text, !o.no_bos, !o.no_special);
  nlohmann::json out = nlohmann::json::array();
  for (TokenId id : ids) {
    if (o.pieces) out.push_back({id, tok->token_to_piece(id)});
    else out.push_back(id);
  }
  // A piece may be part of a UTF-8 character: print U+FFFD rather than fail.
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

CommandRegistrar reg(30, [](CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* c = root.add_subcommand("tokenize", "Print the token ids of a text as a JSON list");
  c->add_option("-m,--model", o->model, "GGUF model (default: the default model, pulled if missing)");
  auto* p = c->add_option("-p,--prompt", o->prompt, "Text to tokenize");
  auto* f = c->add_option("-f,--file", o->file, "Read the text from this file (bytes as they are)");
  p->excludes(f);
  c->add_flag("--no-bos", o->no_bos, "Do not add BOS even if the vocabulary asks for it");
  c->add_flag("--no-special", o->no_special, "Treat special-token text (<|im_start|>...) as plain text");
  c->add_flag("--pieces", o->pieces, "Print [id, piece] pairs instead of ids");
  c->callback([o, p, f] {
    if (p->count() == 0 && f->count() == 0) fail("tokenize: give the text with -p TEXT or -f FILE");
    run_tokenize(*o);
  });
});

}  // namespace
}  // namespace kvforge::cli
