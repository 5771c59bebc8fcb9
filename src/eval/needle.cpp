// See needle.h.
#include "eval/needle.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "eval/haystack.h"
#include "eval/table.h"
#include "model/generate.h"
#include "util/error.h"

namespace kvforge {

namespace {

const char* const kIntro =
    "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will ask you about the pass key later.\n\n";
const char* const kQuestion = "\n\nWhat is the pass key? Answer with the number only.";

std::string needle_sentence(const std::string& key) {
  return fmt::format("The pass key is {0}. Remember it. {0} is the pass key.", key);
}

}  // namespace

NeedleCase make_needle_case(const NeedleCaseSpec& spec, const NeedleFormat& format, const TokenCounter& count) {
  if (!(spec.depth >= 0 && spec.depth <= 1)) fail("needle depth {} is not in [0, 1]", spec.depth);
  uint64_t st = spec.seed;
  // Mix every coordinate of the case into the state.
  st ^= splitmix64(st) ^ (uint64_t)spec.length;
  st ^= splitmix64(st) ^ (uint64_t)std::llround(spec.depth * 1e6);
  st ^= splitmix64(st) ^ (uint64_t)spec.trial;
  NeedleCase c;
  c.key = std::to_string(10000 + splitmix64(st) % 90000);
  const std::string needle = needle_sentence(c.key);

  HaystackSpec hs;
  hs.intro = kIntro;
  hs.question = kQuestion;
  hs.inserts = {{spec.depth, needle}};
  hs.length = spec.length;
  const Haystack h = build_haystack(hs, st, format, count);
  c.user = h.user;
  c.prompt = h.prompt;
  c.n_sentences = h.n_sentences;
  c.needle_index = h.insert_index[0];
  return c;
}

bool needle_answer_correct(const std::string& answer, const std::string& key) {
  return !key.empty() && answer.find(key) != std::string::npos;
}

double NeedleResult::accuracy_at(int32_t length) const {
  Tally t;
  for (const auto& c : cells)
    if (c.length == length) t.add(c);
  return t.accuracy();
}

NeedlePrompt needle_prompt(const Model& model, const NeedleCaseSpec& spec, bool chat) {
  const Tokenizer& tok = model.tokenizer();
  NeedleFormat format;
  bool add_bos = true;
  if (chat) {
    format.chat = detect_chat_template(model.file());
    add_bos = !chat_format_writes_bos(format.chat.format);
  }
  const TokenCounter count = [&](const std::string& s) { return (int32_t)tok.encode(s, false, true).size(); };
  const int32_t bos_extra = add_bos && tok.vocab().add_bos && tok.vocab().bos >= 0 ? 1 : 0;
  NeedleCaseSpec inner = spec;
  inner.length -= bos_extra;
  NeedlePrompt p;
  p.c = make_needle_case(inner, format, count);
  p.tokens = tok.encode(p.c.prompt, add_bos, true);
  return p;
}

NeedleResult run_needle(const Model& model, const ContextParams& base, const NeedleParams& params, bool chat,
                        const NeedleProgress& on_trial) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  if (params.trials <= 0) fail("--trials must be positive");
  if (params.lengths.empty() || params.depths.empty()) fail("needle: no lengths or no depths");
  NeedleResult r;
  const int32_t total = (int32_t)(params.lengths.size() * params.depths.size()) * params.trials;
  for (int32_t length : params.lengths) {
    ContextParams cp = base;
    cp.n_ctx = length + params.n_predict + 1;
    Context ctx(model, cp);
    for (double depth : params.depths) {
      NeedleCell cell{{}, length, depth};
      for (int32_t t = 0; t < params.trials; ++t) {
        const NeedlePrompt np = needle_prompt(model, {params.seed, length, depth, t}, chat);
        const NeedleCase& c = np.c;
        const std::vector<TokenId>& prompt = np.tokens;
        ctx.reset();
        GenerateParams gp;
        gp.n_predict = params.n_predict;
        gp.sampling.temperature = 0;
        std::string answer;
        generate(ctx, prompt, gp, [&](const std::string& s) { answer += s; });
        NeedleTrial tr{length, (int32_t)prompt.size(), depth, t, c.key, answer, needle_answer_correct(answer, c.key)};
        cell.add(tr.correct);
        r.trials.push_back(tr);
        if (on_trial) on_trial((int32_t)r.trials.size(), total, tr);
      }
      r.add(cell);
      r.cells.push_back(cell);
    }
  }
  r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return r;
}

std::string needle_table(const NeedleResult& r, const NeedleParams& params) {
  std::vector<std::string> headers{"length"};
  std::vector<Align> align{Align::Right};
  for (double d : params.depths) {
    headers.push_back(fmt::format("depth {:.2f}", d));
    align.push_back(Align::Right);
  }
  headers.push_back("all depths");
  align.push_back(Align::Right);
  std::vector<std::vector<std::string>> rows;
  for (int32_t length : params.lengths) {
    std::vector<std::string> row{std::to_string(length)};
    Tally all;
    for (double d : params.depths)
      for (const auto& c : r.cells)
        if (c.length == length && c.depth == d) {
          row.push_back(c.str());
          all.add(c);
        }
    row.push_back(all.str());
    rows.push_back(std::move(row));
  }
  return format_markdown_table(headers, rows, align) +
         fmt::format("\noverall: {}\n", r.str());
}

}  // namespace kvforge
