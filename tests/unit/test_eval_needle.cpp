// Needle prompt generation: deterministic per seed, fits the length, needle
// at the requested depth; answer checking.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "eval/needle.h"
#include "util/error.h"

using namespace kvforge;

namespace {
// Stand-in tokenizer: one token per whitespace-separated word.
int32_t words(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int32_t n = 0;
  while (in >> w) ++n;
  return n;
}
NeedleFormat raw() { return NeedleFormat{}; }
}  // namespace

TEST(EvalNeedle, SameSeedSameCase) {
  const NeedleCase a = make_needle_case({42, 512, 0.5, 3}, raw(), words);
  const NeedleCase b = make_needle_case({42, 512, 0.5, 3}, raw(), words);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.key, b.key);
  // Any coordinate changes the case.
  EXPECT_NE(make_needle_case({43, 512, 0.5, 3}, raw(), words).prompt, a.prompt);
  EXPECT_NE(make_needle_case({42, 512, 0.5, 4}, raw(), words).prompt, a.prompt);
  EXPECT_NE(make_needle_case({42, 512, 0.1, 3}, raw(), words).prompt, a.prompt);
}

TEST(EvalNeedle, KeysAreFiveDigitsAndVary) {
  std::set<std::string> keys;
  for (int t = 0; t < 20; ++t) {
    const std::string k = make_needle_case({42, 256, 0.5, t}, raw(), words).key;
    ASSERT_EQ(k.size(), 5u);
    EXPECT_GE(std::stoi(k), 10000);
    keys.insert(k);
  }
  EXPECT_GE(keys.size(), 18u);
}

TEST(EvalNeedle, FitsTheLengthAndPlacesTheNeedle) {
  for (int32_t len : {128, 512, 2048})
    for (double d : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      const NeedleCase c = make_needle_case({7, len, d, 0}, raw(), words);
      const int32_t n = words(c.prompt);
      EXPECT_LE(n, len);
      EXPECT_GE(n, len - 15) << "the haystack should fill the length";
      EXPECT_EQ(c.key.size(), 5u);
      EXPECT_NE(c.prompt.find("The pass key is " + c.key + ". Remember it."), std::string::npos);
      EXPECT_EQ(c.needle_index, (int32_t)std::llround(d * c.n_sentences));
      // Relative position of the needle in the haystack follows the depth.
      const size_t h0 = c.user.find("\n\n") + 2, h1 = c.user.rfind("\n\n");
      const std::string needle = "The pass key is " + c.key + ". Remember it. " + c.key + " is the pass key.";
      const size_t at = c.user.find(needle);
      ASSERT_TRUE(at >= h0 && at + needle.size() <= h1);
      const double pos = (double)(at - h0) / (double)(h1 - h0 - needle.size());
      EXPECT_NEAR(pos, d, len <= 128 ? 0.15 : 0.05) << len << " " << d;
      // The prompt ends with the started answer.
      EXPECT_EQ(c.prompt.substr(c.prompt.size() - 15), "The pass key is");
    }
}

TEST(EvalNeedle, ChatTemplateWrapsTheUserMessage) {
  NeedleFormat f;
  f.chat = ChatTemplate(ChatFormat::ChatML, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const NeedleCase c = make_needle_case({1, 400, 0.5, 0}, f, words);
  EXPECT_EQ(c.prompt.rfind("<|im_start|>system\n", 0), 0u);
  EXPECT_NE(c.prompt.find("<|im_start|>user\n" + c.user + "<|im_end|>"), std::string::npos);
  EXPECT_NE(c.prompt.find("<|im_start|>assistant\nThe pass key is"), std::string::npos);
}

TEST(EvalNeedle, TooShortLengthIsAnError) { EXPECT_THROW(make_needle_case({1, 20, 0.5, 0}, raw(), words), Error); }

TEST(EvalNeedle, AnswerChecking) {
  EXPECT_TRUE(needle_answer_correct(" 71432.", "71432"));
  EXPECT_TRUE(needle_answer_correct("The pass key is 71432", "71432"));
  EXPECT_FALSE(needle_answer_correct(" 7143.", "71432"));
  EXPECT_FALSE(needle_answer_correct("", "71432"));
  EXPECT_FALSE(needle_answer_correct("anything", ""));
}

TEST(EvalNeedle, SplitMixIsTheReferenceSequence) {
  uint64_t s = 0;  // splitmix64 reference values for seed 0
  EXPECT_EQ(splitmix64(s), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(s), 0x6E789E6AA1B965F4ull);
}
