#pragma once
// Long prompts for retrieval-style evaluations (needle, the task suite):
// plain filler sentences, a few information sentences inserted at relative
// depths, an intro before and a question after, fitted to a token length.
// A pure function of its inputs and the seed state (splitmix64), so the same
// seed gives the same prompts on every machine.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"

namespace kvforge {

// Counts the tokens of a text (the model's tokenizer; tests use a stand-in).
using TokenCounter = std::function<int32_t(const std::string&)>;

// How a user message becomes the model's prompt; Raw = no template. The
// assistant's answer is started with answer_prefix.
struct NeedleFormat {
  ChatTemplate chat;  // format Raw: plain text
  std::string answer_prefix = "The pass key is";
};

struct HaystackSpec {
  std::string intro;     // before the haystack (ends with a blank line)
  std::string question;  // after it (starts with a blank line)
  // Sentences placed at relative depths in [0, 1] (0 = before the first filler
  // sentence, 1 = after the last), in this order where depths coincide.
  std::vector<std::pair<double, std::string>> inserts;
  int32_t length = 512;  // the prompt is at most this many tokens
};

struct Haystack {
  std::string user;    // intro + haystack + question
  std::string prompt;  // the user message in the format, answer prefix appended
  int32_t n_sentences = 0;            // filler sentences
  std::vector<int32_t> insert_index;  // filler index before which each insert sits
};

// Adds filler sentences drawn with `rng` while the prompt fits. Throws
// kvforge::Error if even an empty haystack does not fit.
Haystack build_haystack(const HaystackSpec& spec, uint64_t& rng, const NeedleFormat& format, const TokenCounter& count);

// The user message rendered as the model's prompt (see NeedleFormat).
std::string render_prompt(const NeedleFormat& format, const std::string& user);

// 64-bit mixing (splitmix64), exposed for tests.
uint64_t splitmix64(uint64_t& state);

}  // namespace kvforge
