#include "model/text_stream.h"

#include <algorithm>

#include "model/utf8_sanitize.h"

namespace kvforge {

TextStream::TextStream(std::vector<std::string> stop_strings) {
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) continue;
    stops_.push_back(std::move(stop_strings[i]));
    stop_ids_.push_back(static_cast<int>(i));
  }
}

size_t TextStream::stop_prefix_suffix() const {
  const std::string_view p = pending_;
  size_t best = 0;
  for (const std::string& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, p.size()); len > best; --len) {
      if (p.substr(p.size() - len) == std::string_view(stop).substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

std::string TextStream::push(std::string_view piece) {
  if (stopped()) return {};
  pending_.append(piece);

  // Every emitted byte was, when emitted, no part of a possible stop string,
  // so a match can only lie inside pending_ (which stays short: held-back
  // bytes plus one piece).
  size_t first = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t at = pending_.find(stops_[i]);
    if (at < first) {
      first = at;
      stop_index_ = stop_ids_[i];
    }
  }
  if (first != std::string::npos) {
    std::string out = utf8::sanitize(std::string_view(pending_).substr(0, first));
    pending_.clear();
    return out;
  }

  size_t cut = pending_.size() - stop_prefix_suffix();
  cut -= utf8::incomplete_suffix(std::string_view(pending_).substr(0, cut));
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
  return out;
}

std::string TextStream::flush() {
  if (stopped()) return {};
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace kvforge
