#pragma once
// Correct answers out of cases run: one cell of an evaluation table, or the
// whole table. Needle and task results both count this way.
#include <cstdint>
#include <string>

namespace kvforge {

struct Tally {
  int32_t correct = 0, total = 0;
  void add(bool ok) { correct += ok ? 1 : 0, ++total; }
  void add(const Tally& t) { correct += t.correct, total += t.total; }
  double accuracy() const { return total ? (double)correct / total : 0.0; }
  std::string str() const;  // "3/5 (60.0%)"
};

}  // namespace kvforge
