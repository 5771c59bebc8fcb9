#include "eval/progress_bar.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

namespace kvforge {

std::string format_duration(double s) {
  if (!(s >= 0) || std::isinf(s)) return "?";
  const long t = std::lround(s);
  if (t < 60) return fmt::format("{} s", t);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, (int)(t % 60));
  return fmt::format("{}h{:02d}m", t / 3600, (int)((t % 3600) / 60));
}

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(STDERR_FILENO) != 0) {}

std::string ProgressBar::render(const std::string& label, int64_t done, int64_t total, double seconds,
                                const std::string& extra, int width) {
  const double frac = total > 0 ? std::min(1.0, (double)done / (double)total) : 1.0;
  const int fill = (int)std::lround(frac * width);
  std::string bar(fill, '=');
  if (fill < width) bar += '>' + std::string(width - fill - 1, ' ');
  const std::string eta = done > 0 ? format_duration(seconds / (double)done * (double)(total - done)) : "?";
  std::string s = fmt::format("{} [{}] {}/{} {:3.0f}% | {} elapsed, ETA {}", label, bar, done, total, frac * 100,
                              format_duration(seconds), eta);
  if (!extra.empty()) s.append(" | ").append(extra);
  return s;
}

void ProgressBar::update(int64_t done, double seconds, const std::string& extra) {
  const std::string s = render(label_, done, total_, seconds, extra);
  if (tty_) std::fprintf(stderr, "\r\033[K%s", s.c_str());
  else std::fprintf(stderr, "%s\n", s.c_str());
  drawn_ = true;
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (tty_ && drawn_) std::fputc('\n', stderr);
  drawn_ = false;
  std::fflush(stderr);
}

std::function<void(int32_t, int32_t)> prefill_progress(std::string label) {
  using clock = std::chrono::steady_clock;
  struct State {
    std::string label;
    clock::time_point start, last_draw;
    std::unique_ptr<ProgressBar> bar;  // created once the eval has run for a second
  };
  auto s = std::make_shared<State>();
  s->label = std::move(label);
  return [s](int32_t done, int32_t total) {
    const auto now = clock::now();
    if (done == 0) {  // a new eval() call
      s->start = now;
      s->bar.reset();
      return;
    }
    const double elapsed = std::chrono::duration<double>(now - s->start).count();
    if (!s->bar) {
      if (elapsed < 1.0 || done >= total) return;
      s->bar = std::make_unique<ProgressBar>(s->label, total);
    } else if (done < total) {
      const double since = std::chrono::duration<double>(now - s->last_draw).count();
      if (since < (s->bar->tty() ? 0.25 : 10.0)) return;
    }
    s->bar->update(done, elapsed, fmt::format("{:.0f} tok/s", done / elapsed));
    s->last_draw = now;
    if (done >= total) {
      s->bar->finish();
      s->bar.reset();
    }
  };
}

}  // namespace kvforge
