#pragma once
// UTF-8 checks for streaming generated text: tokens are byte strings and a
// multibyte character may be split across tokens, or a model may produce
// bytes that are not UTF-8 at all.
#include <cstddef>
#include <string>
#include <string_view>

namespace kvforge::utf8 {

// Length of the longest suffix of s that is a proper prefix of a well-formed
// UTF-8 sequence (0..3), i.e. bytes that may still become a character.
size_t incomplete_suffix(std::string_view s);

// s with every ill-formed part replaced by U+FFFD, one per maximal subpart
// (the Unicode "best practice", also what WHATWG decoders do). A truncated
// sequence at the end counts as ill-formed.
std::string sanitize(std::string_view s);

}  // namespace kvforge::utf8
