// `kvforge run`: generate a continuation of one prompt.
// stdout carries only the generated text; everything else goes to stderr.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "model/generate.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  SamplingOptions sampling;
  std::string prompt;
  std::string prompt_file;
  std::string system;
  std::string chat_format;
  int32_t n_predict = 256;
  bool no_cache = false;
  bool ignore_eos = false;
  bool chat = false;
  bool context_shift = false;
  int32_t n_keep = 4;
  std::vector<std::string> stop;
  std::string json_out;
};

// Machine-readable record of a run (token ids and rates), for scripts and tests.
void write_json(const std::string& path, const std::vector<TokenId>& prompt, const GenerateResult& r,
                const KvCache& kv) {
  nlohmann::json j = {{"prompt_tokens", prompt},     {"tokens", r.tokens},
                      {"stop_reason", r.stop_reason}, {"prefill_seconds", r.prefill_seconds},
                      {"decode_seconds", r.decode_seconds}, {"n_decoded", r.n_decoded}, {"n_shifts", r.n_shifts},
                      {"kv_policy", kv.describe()},   {"kv_bytes", kv.bytes()},
                      {"kv_bytes_used", kv.bytes_used()}, {"kv_bytes_per_token", kv.bytes_per_token()}};
  std::ofstream out(path);
  if (!out) fail("cannot write '{}'", path);
  out << j.dump() << "\n";
}

void print_summary(const Context& ctx, const GenerateResult& r, uint64_t seed) {
  const double pp = r.prefill_seconds > 0 ? r.n_prompt / r.prefill_seconds : 0;
  const double tg = r.decode_seconds > 0 ? r.n_decoded / r.decode_seconds : 0;
  const KvCache& kv = ctx.cache();
  std::fprintf(stderr,
               "\n[kvforge] prompt %d tokens | prefill %.1f tok/s | decode %.1f tok/s (%zu tokens, %s) | "
               "KV cache %s allocated, %s used (%s/token, %s) | threads %d | seed %llu\n",
               r.n_prompt, pp, tg, r.tokens.size(), r.stop_reason.c_str(), human_bytes((double)kv.bytes()).c_str(),
               human_bytes((double)kv.bytes_used()).c_str(),
               human_bytes((double)kv.bytes_per_token()).c_str(), kv.describe().c_str(), ctx.n_threads(),
               (unsigned long long)seed);
}

void run(RunOptions& o) {
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) fail("cannot read prompt file '{}'", o.prompt_file);
    std::stringstream ss;
    ss << in.rdbuf();
    o.prompt = ss.str();
  }
  auto model = o.model.load_model();
  const Tokenizer& tok = model->tokenizer();
  std::string text = o.prompt;
  bool add_bos = true;
  if (o.chat) {
    const ChatTemplate tpl =
        o.chat_format.empty() ? detect_chat_template(model->file()) : ChatTemplate(parse_chat_format(o.chat_format));
    std::vector<ChatMessage> msgs;
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", o.prompt});
    text = render_chat(tpl, msgs, true);
    add_bos = !chat_format_writes_bos(tpl.format);  // Llama 3's rendering starts with its BOS
  }
  const std::vector<TokenId> prompt = tok.encode(text, add_bos, true);
  Context ctx(*model, o.model.context_params());

  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampling = o.sampling.resolve();
  gp.stop = o.stop;
  gp.ignore_eos = o.ignore_eos;
  gp.use_cache = !o.no_cache;
  gp.context_shift = o.context_shift;
  gp.n_keep = o.n_keep;
  gp.on_prefill = prefill_progress("prefill");  // long prompts (-f FILE)
  const GenerateResult r = generate(ctx, prompt, gp, [](const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  print_summary(ctx, r, gp.sampling.seed);
  if (!o.json_out.empty()) write_json(o.json_out, prompt, r, ctx.cache());
}

CommandRegistrar reg(10, [](CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* c = root.add_subcommand("run", "Generate text from a prompt (text on stdout, summary on stderr)");
  o->model.add_to(*c);
  o->sampling.add_to(*c);
  auto* p = c->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* f = c->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
  p->excludes(f);
  c->add_option("-n,--n-predict", o->n_predict, "Maximum number of new tokens (-1 = until end of text or context full)")
      ->capture_default_str();
  c->add_flag("--no-cache", o->no_cache, "Recompute the whole sequence at every step (the baseline the cache is measured against)");
  c->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-text tokens");
  c->add_flag("--context-shift", o->context_shift,
              "When a full-history cache is full, keep the first --keep tokens and the newest half of the rest "
              "(re-evaluated) and go on, instead of stopping with 'context full'");
  c->add_option("--keep", o->n_keep, "Tokens of the prompt's start kept by --context-shift")
      ->check(non_negative_number())
      ->capture_default_str();
  c->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template as a user message");
  c->add_option("--system", o->system, "System message for --chat");
  c->add_option("--chat-format", o->chat_format, "Force a chat format: chatml, smollm3, llama3, gemma, phi3, phi3-compact or raw (default: from the model)");
  c->add_option("--stop", o->stop, "Stop when this text is generated (repeatable)");
  c->add_option("--json-out", o->json_out, "Also write prompt/generated token ids and timings to this JSON file");
  c->callback([o] {
    if (o->prompt.empty() && o->prompt_file.empty()) fail("no prompt: give -p TEXT or -f FILE");
    run(*o);
  });
});

}  // namespace
}  // namespace kvforge::cli
