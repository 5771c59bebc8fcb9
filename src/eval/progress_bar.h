#pragma once
// A one-line progress bar with elapsed time and ETA on stderr. On a terminal
// it is redrawn in place; otherwise each update is its own line (logs).
#include <cstdint>
#include <functional>
#include <string>

namespace kvforge {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  // done items of total, seconds since start, extra text after the bar.
  void update(int64_t done, double seconds, const std::string& extra = {});
  void finish();  // ends the line on a terminal
  bool tty() const { return tty_; }

  // The text of one update (no control characters): for tests.
  static std::string render(const std::string& label, int64_t done, int64_t total, double seconds,
                            const std::string& extra, int width = 30);

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  bool drawn_ = false;
};

std::string format_duration(double seconds);  // "42 s", "3m05s", "1h02m"

// A progress callback for Context::eval (done, total tokens) that stays
// silent for evaluations shorter than a second and then draws a bar with
// tokens/s: redrawn at most 4 times a second on a terminal, every 10 s in a log.
std::function<void(int32_t, int32_t)> prefill_progress(std::string label);

}  // namespace kvforge
