#pragma once
// The task suite of `kvforge eval tasks`: small verifiable tasks whose needed
// information sits far from the question (so a streaming head that sees only
// sinks + recent tokens cannot answer from its window), generated from a seed,
// each with an exact answer check. Plus GSM8K-format JSONL records
// (`question`, `answer` ending in "#### N") for larger models.
//
// Every case is a pure function of (seed, task, length, trial) (splitmix64,
// see haystack.h). The information sentences lie between 10 % and 60 % of the
// haystack, so at 512 tokens some 150+ tokens of filler separate the last of
// them from the question (more than the 16 + 64 a streaming head keeps).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "eval/tally.h"
#include "model/context.h"

namespace kvforge {

// Generated tasks, in the order of the default list.
const std::vector<std::string>& task_names();
// Tasks run by default (the ones SmolLM2-135M-Instruct solves, see README).
const std::vector<std::string>& default_task_names();

struct TaskCase {
  std::string task;
  std::string expected;  // the exact answer (a number, or words separated by single spaces)
  std::string user;      // the user message
  std::string prompt;    // as given to the model (format applied, answer started)
  std::vector<int32_t> insert_index;  // where the information sentences went (filler index)
  int32_t n_sentences = 0;
};

// Throws kvforge::Error for an unknown task or a length too short for it.
TaskCase make_task_case(const std::string& task, uint64_t seed, int32_t length, int32_t trial,
                        const ChatTemplate& chat, const TokenCounter& count);

// A case as `model` sees it, as run_tasks feeds it: the case in the model's
// chat template (chat) and its prompt tokens (BOS as the format wants;
// length counts it).
struct TaskPrompt {
  TaskCase c;
  std::vector<TokenId> tokens;
};
TaskPrompt task_prompt(const Model& model, const std::string& task, uint64_t seed, int32_t length, int32_t trial,
                       bool chat);
// The tokens of a question (a JSONL record's) as run_tasks gives it to `model`.
std::vector<TokenId> question_prompt(const Model& model, const std::string& question, bool chat);

// Exact answer extraction: numbers are the first integer of the answer
// (thousands separators dropped); word lists are the first words of the
// answer, lower-cased, as many as expected. GSM8K answers (`gsm8k` true):
// the number after the last "####" if the answer has one, else its last number.
std::string extract_answer(const std::string& answer, const std::string& expected, bool gsm8k = false);
bool task_answer_correct(const std::string& answer, const std::string& expected, bool gsm8k = false);

// A GSM8K-format record: the question and the final answer after "####".
struct JsonlCase {
  std::string question;
  std::string expected;
};
// One JSON object per line with string fields question and answer; throws
// kvforge::Error naming the line for anything else.
std::vector<JsonlCase> read_gsm8k_jsonl(const std::string& path);

struct TaskParams {
  std::vector<std::string> tasks = default_task_names();
  std::vector<int32_t> lengths{512};
  int32_t trials = 10;
  uint64_t seed = 42;
  int32_t n_predict = 16;  // tokens generated per answer (greedy); JSONL: 256
  std::string jsonl;       // if set: these records instead of the generated tasks
};

struct TaskTrial {
  std::string task;
  int32_t length = 0;    // requested (0 for JSONL records)
  int32_t n_prompt = 0;  // actual prompt tokens
  int32_t trial = 0;
  std::string expected, answer, extracted;
  bool correct = false;
};

struct TaskCell : Tally {
  std::string task;
  int32_t length = 0;
};

struct TaskResult : Tally {  // over all cells
  std::vector<TaskTrial> trials;
  std::vector<TaskCell> cells;  // tasks x lengths, in order
  double seconds = 0;
};

using TaskProgress = std::function<void(int32_t done, int32_t total, const TaskTrial&)>;

// Total number of cases run_tasks will run.
int32_t count_task_cases(const TaskParams& params);
// The context a length's cases run in: the prompt, the answer, and at least
// an eviction budget (a budget above the text drops nothing).
int32_t task_context_size(const TaskParams& params, const KvPolicy& kv, int32_t length);
// Runs every (task, length, trial) greedily with the cache policy of `base`
// (n_ctx replaced per length). chat: the model's chat template.
TaskResult run_tasks(const Model& model, const ContextParams& base, const TaskParams& params, bool chat,
                     const TaskProgress& on_trial = {});

// The stdout table: one row per task, one column per length, plus overall.
std::string task_table(const TaskResult& r, const TaskParams& params);

}  // namespace kvforge
