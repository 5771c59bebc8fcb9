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
  std::string batch;
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

nlohmann::json token_list(const Tokenizer& tok, const std::string& text, const TokenizeOptions& o) {
  nlohmann::json out = nlohmann::json::array();
  for (TokenId id : tok.encode(text, !o.no_bos, !o.no_special)) {
    if (o.pieces) out.push_back({id, tok.token_to_piece(id)});
    else out.push_back(id);
  }
  return out;
}

// A piece may be part of a UTF-8 character: print U+FFFD rather than fail.
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void run_tokenize(const TokenizeOptions& o) {
  auto gguf_file = gguf::File::open(resolve_model_path(o.model));
  auto tok = Tokenizer::from_gguf(*gguf_file);
  if (!o.batch.empty()) {
    // One JSON string per input line -> one JSON list per output line (tests
    // compare many texts without paying the vocabulary load each time).
    std::istringstream lines(read_file(o.batch));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_string()) fail("--batch: line is not a JSON string: {}", line.substr(0, 80));
      std::printf("%s\n", dump(token_list(*tok, j.get<std::string>(), o)).c_str());
    }
    return;
  }
  const std::string text = o.file.empty() ? o.prompt : read_file(o.file);
  std::printf("%s\n", dump(token_list(*tok, text, o)).c_str());
}

CommandRegistrar reg(30, [](CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* c = root.add_subcommand("tokenize", "Print the token ids of a text as a JSON list");
  c->add_option("-m,--model", o->model, "GGUF model (default: the default model, pulled if missing)");
  auto* p = c->add_option("-p,--prompt", o->prompt, "Text to tokenize");
  auto* f = c->add_option("-f,--file", o->file, "Read the text from this file (bytes as they are)");
  auto* b = c->add_option("--batch", o->batch, "File of JSON strings, one per line: print one JSON list per line");
  p->excludes(f);
  b->excludes(p, f);
  c->add_flag("--no-bos", o->no_bos, "Do not add BOS even if the vocabulary asks for it");
  c->add_flag("--no-special", o->no_special, "Treat special-token text (<|im_start|>...) as plain text");
  c->add_flag("--pieces", o->pieces, "Print [id, piece] pairs instead of ids");
  c->callback([o, p, f, b] {
    if (p->count() + f->count() + b->count() == 0) fail("tokenize: give the text with -p TEXT, -f FILE or --batch FILE");
    run_tokenize(*o);
  });
});

}  // namespace
}  // namespace kvforge::cli
