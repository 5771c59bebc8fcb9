// The task suite: generators are pure functions of (seed, task, length,
// trial), fit their length and keep the information far from the question;
// answer extraction on right and wrong answers; GSM8K JSONL.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "eval/tasks.h"
#include "util/error.h"

using namespace kvforge;

namespace {

int32_t words(const std::string& s) {  // stand-in tokenizer: one token per word
  std::istringstream in(s);
  std::string w;
  int32_t n = 0;
  while (in >> w) ++n;
  return n;
}

TEST(EvalTasks, SameSeedSameCaseAndEveryCoordinateMatters) {
  for (const std::string& t : task_names()) {
    const TaskCase a = make_task_case(t, 42, 512, 3, {}, words), b = make_task_case(t, 42, 512, 3, {}, words);
    EXPECT_EQ(a.prompt, b.prompt) << t;
    EXPECT_EQ(a.expected, b.expected) << t;
    EXPECT_NE(make_task_case(t, 43, 512, 3, {}, words).prompt, a.prompt) << t;
    EXPECT_NE(make_task_case(t, 42, 512, 4, {}, words).prompt, a.prompt) << t;
    EXPECT_NE(make_task_case(t, 42, 500, 3, {}, words).prompt, a.prompt) << t;
  }
  EXPECT_NE(make_task_case("passkey", 1, 512, 0, {}, words).prompt,
            make_task_case("kv-retrieval", 1, 512, 0, {}, words).prompt);
}

TEST(EvalTasks, FitTheLengthAndKeepTheInformationFarFromTheQuestion) {
  for (const std::string& t : task_names())
    for (int trial = 0; trial < 20; ++trial) {
      const TaskCase c = make_task_case(t, 7, 512, trial, {}, words);
      const int32_t n = words(c.prompt);
      EXPECT_LE(n, 512) << t;
      EXPECT_GE(n, 490) << t;
      ASSERT_FALSE(c.insert_index.empty());
      // Every information sentence sits before at least 40% of the filler
      // (about 180 tokens here), far beyond 16 sinks + 64 recent tokens.
      for (int32_t at : c.insert_index) EXPECT_LE(at, (int32_t)std::llround(0.6 * c.n_sentences)) << t;
      EXPECT_GE(c.insert_index.front(), (int32_t)(0.1 * c.n_sentences) - 1) << t << ": not in the sinks either";
      // The expected answer is stated in the text (directly or through the chain).
      EXPECT_FALSE(c.expected.empty());
    }
  EXPECT_THROW(make_task_case("passkey", 1, 20, 0, {}, words), Error);
  EXPECT_THROW(make_task_case("sorting", 1, 512, 0, {}, words), Error);
}

TEST(EvalTasks, CasesStateTheirAnswers) {
  const TaskCase p = make_task_case("passkey", 3, 512, 0, {}, words);
  EXPECT_NE(p.user.find("The pass key is " + p.expected + "."), std::string::npos);
  const TaskCase a = make_task_case("arithmetic", 3, 512, 0, {}, words);
  EXPECT_GE(std::stoi(a.expected), 4);
  EXPECT_LE(std::stoi(a.expected), 18);
  const TaskCase c = make_task_case("copy", 3, 512, 0, {}, words);
  std::string list;
  for (char ch : c.expected) list += ch == ' ' ? std::string(", ") : std::string(1, ch);
  EXPECT_NE(c.user.find("The list of three words is: " + list + "."), std::string::npos);
  const TaskCase v = make_task_case("variable-tracking", 3, 512, 0, {}, words);
  EXPECT_NE(v.user.find(" = " + v.expected + "."), std::string::npos);
  EXPECT_EQ(c.prompt.substr(c.prompt.size() - 20), "The three words are:");
}

TEST(EvalTasks, AnswerExtraction) {
  EXPECT_TRUE(task_answer_correct(" 71432.", "71432"));
  EXPECT_TRUE(task_answer_correct(" 71,432 is the key", "71432"));
  EXPECT_TRUE(task_answer_correct(" 012", "12"));
  EXPECT_FALSE(task_answer_correct(" 7143.", "71432"));
  EXPECT_FALSE(task_answer_correct(" 714321", "71432"));
  EXPECT_FALSE(task_answer_correct(" 12, not 71432", "71432"));  // the first number counts
  EXPECT_FALSE(task_answer_correct("", "71432"));
  EXPECT_FALSE(task_answer_correct("anything", ""));
  EXPECT_TRUE(task_answer_correct(" apple, River, candle, stone, garden.", "apple river candle stone garden"));
  EXPECT_TRUE(task_answer_correct(" apple river candle stone garden and more", "apple river candle stone garden"));
  EXPECT_FALSE(task_answer_correct(" apple, candle, river, stone, garden", "apple river candle stone garden"));
  EXPECT_FALSE(task_answer_correct(" apple, river", "apple river candle stone garden"));
  EXPECT_EQ(extract_answer(" 1,234 and 5", "1234"), "1234");
  EXPECT_EQ(extract_answer(" 1,23", "1"), "1");
  // GSM8K: after the last ####, else the last number.
  EXPECT_TRUE(task_answer_correct("3 + 4 = 7 so 7 * 2 = 14\n#### 14", "14", true));
  EXPECT_TRUE(task_answer_correct("She pays 2 + 3 = 5 dollars, so the answer is 1,005.", "1005", true));
  EXPECT_FALSE(task_answer_correct("#### 13 and then 14", "14", true));
  EXPECT_FALSE(task_answer_correct("no number", "14", true));
}

TEST(EvalTasks, ReadsGsm8kJsonl) {
  const std::string path = "/tmp/kvforge_gsm8k_" + std::to_string(getpid()) + ".jsonl";
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  write("{\"question\": \"What is 2 + 3?\", \"answer\": \"2 + 3 = <<2+3=5>>5\\n#### 5\"}\n\n"
        "{\"question\": \"Big?\", \"answer\": \"#### 1,200\"}\n");
  const auto cases = read_gsm8k_jsonl(path);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].question, "What is 2 + 3?");
  EXPECT_EQ(cases[0].expected, "5");
  EXPECT_EQ(cases[1].expected, "1200");
  auto error_of = [&](const std::string& text) {
    write(text);
    try {
      read_gsm8k_jsonl(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("{\"question\": \"q\", \"answer\": \"5\"}\n").find("line 1: the answer does not end in '#### N'"),
            std::string::npos);
  EXPECT_NE(error_of("{\"question\": \"q\", \"answer\": \"#### 5\"}\nnot json\n").find("line 2: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of("{\"question\": 3, \"answer\": \"#### 5\"}\n").find("line 1: expected an object"), std::string::npos);
  EXPECT_NE(error_of("\n").find("no records"), std::string::npos);
  unlink(path.c_str());
  EXPECT_THROW(read_gsm8k_jsonl("/nonexistent.jsonl"), Error);
}

}  // namespace
