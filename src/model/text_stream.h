#pragma once
// Turns the byte pieces of generated tokens into text that is safe to show
// (or put in JSON) as it arrives:
//  - only complete UTF-8 is emitted; a character split across tokens is held
//    until its last byte comes;
//  - a suffix that could still grow into a stop string is held back, so the
//    user never sees the start of a stop string that then completes;
//  - when a stop string completes, the text before it is emitted, the stop
//    string itself is not, and the stream stops (later pushes emit nothing).
// Stop strings are matched on raw bytes, before any repair.
// Ill-formed UTF-8 (invalid bytes, or a sequence cut off by flush() or by a
// stop string) is emitted as U+FFFD, never as raw bytes: the output is always
// valid UTF-8, which terminals and JSON encoders require.
#include <string>
#include <string_view>
#include <vector>

namespace kvforge {

class TextStream {
 public:
  // Empty stop strings are ignored (they would stop before any text).
  explicit TextStream(std::vector<std::string> stop_strings = {});

  // Adds one token's bytes; returns the text that can now be shown (maybe "").
  std::string push(std::string_view piece);
  // End of generation: returns whatever is still held back.
  std::string flush();

  bool stopped() const { return stop_index_ >= 0; }
  // Index into the constructor's list of the stop string that matched, or -1.
  int stop_index() const { return stop_index_; }

 private:
  // Longest suffix of pending_ that is a proper prefix of some stop string.
  size_t stop_prefix_suffix() const;

  std::vector<std::string> stops_;
  std::vector<int> stop_ids_;  // stops_[i] is the caller's stop_ids_[i]
  std::string pending_;        // bytes received but not yet emitted
  int stop_index_ = -1;
};

}  // namespace kvforge
