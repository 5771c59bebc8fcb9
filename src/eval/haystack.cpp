// See haystack.h.
#include "eval/haystack.h"

#include <cmath>

#include "util/error.h"

namespace kvforge {

namespace {

// Plain, unremarkable sentences: enough variety that the haystack is not a
// loop, nothing that looks like a number to remember.
const char* const kFiller[] = {
    "The grass is green and the sky is blue.",
    "The river runs slowly past the old mill.",
    "A cat sleeps in the warm afternoon sun.",
    "The baker opens his shop early every morning.",
    "Leaves fall from the trees when autumn comes.",
    "The children walk to school along the quiet road.",
    "Clouds drift over the hills toward the sea.",
    "The library is calm and smells of old paper.",
    "A small boat rocks gently in the harbour.",
    "The farmer checks his fields before the rain.",
    "Birds sing in the garden at the break of day.",
    "The train arrives at the station on time.",
    "A cup of tea cools on the kitchen table.",
    "The wind moves the tall grass back and forth.",
    "Snow covers the mountains during the winter.",
    "The market is busy on a bright Saturday.",
    "An old clock ticks in the hallway of the house.",
    "The lake is still and reflects the trees.",
    "A dog waits patiently by the front door.",
    "The painter mixes colours for a new picture.",
    "Fresh bread is cooling by the open window.",
    "The road winds through the forest to the village.",
    "Rain taps softly against the glass.",
    "The gardener plants flowers along the path.",
    "Stars appear one by one in the evening sky.",
    "The teacher writes a long sentence on the board.",
    "A gentle breeze carries the smell of the sea.",
    "The shop on the corner sells fruit and vegetables.",
    "The bridge crosses the river near the church.",
    "Smoke rises slowly from the chimney.",
};
constexpr int kNFiller = sizeof(kFiller) / sizeof(kFiller[0]);

// The filler with the inserts before the filler sentences they precede.
std::string join_haystack(const std::vector<int>& filler, const std::vector<int32_t>& at,
                          const std::vector<std::pair<double, std::string>>& inserts) {
  std::string s;
  auto put = [&](const std::string& sentence) {
    if (!s.empty()) s += ' ';
    s += sentence;
  };
  const int32_t n = (int32_t)filler.size();
  for (int32_t i = 0; i <= n; ++i) {
    for (size_t k = 0; k < inserts.size(); ++k)
      if (at[k] == i) put(inserts[k].second);
    if (i < n) put(kFiller[filler[i]]);
  }
  return s;
}

}  // namespace

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string render_prompt(const NeedleFormat& f, const std::string& user) {
  if (f.chat.format == ChatFormat::Raw) return user + "\n" + f.answer_prefix;
  return render_chat(f.chat, {{"user", user}}, true) + f.answer_prefix;
}

Haystack build_haystack(const HaystackSpec& spec, uint64_t& st, const NeedleFormat& format, const TokenCounter& count) {
  for (const auto& [depth, sentence] : spec.inserts)
    if (!(depth >= 0 && depth <= 1)) fail("insert depth {} is not in [0, 1]", depth);
  std::string info;
  for (const auto& [depth, sentence] : spec.inserts) info += sentence;
  // A long enough random sentence sequence (no sentence twice in a row).
  const int32_t fixed = count(render_prompt(format, spec.intro + info + spec.question));
  if (fixed > spec.length)
    fail("length {} is too short: the question and the information alone take {} tokens", spec.length, fixed);
  std::vector<int> filler;
  int32_t est = fixed;
  int prev = -1;
  while (true) {
    int s = (int)(splitmix64(st) % kNFiller);
    if (s == prev) s = (s + 1) % kNFiller;
    const int32_t n = count(std::string(" ") + kFiller[s]);
    if (est + n > spec.length) break;
    est += n;
    filler.push_back(s);
    prev = s;
  }
  // The estimate sums sentences tokenized alone; drop sentences until the
  // real prompt fits.
  Haystack h;
  for (;;) {
    h.n_sentences = (int32_t)filler.size();
    h.insert_index.clear();
    for (const auto& [depth, sentence] : spec.inserts) h.insert_index.push_back((int32_t)std::llround(depth * h.n_sentences));
    h.user = spec.intro + join_haystack(filler, h.insert_index, spec.inserts) + spec.question;
    h.prompt = render_prompt(format, h.user);
    if (filler.empty() || count(h.prompt) <= spec.length) break;
    filler.pop_back();
  }
  return h;
}

}  // namespace kvforge
