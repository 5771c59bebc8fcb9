#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/text_stream.h"
#include "model/utf8_sanitize.h"

using namespace kvforge;

namespace {

// Pushes the pieces, checks that every emitted chunk is valid UTF-8, and
// returns everything emitted including the flush.
std::string run(TextStream& ts, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) {
    std::string chunk = ts.push(p);
    EXPECT_EQ(utf8::sanitize(chunk), chunk) << "emitted invalid UTF-8";
    out += chunk;
  }
  out += ts.flush();
  return out;
}

// All ways to cut s into two or three pieces.
std::vector<std::vector<std::string>> splits(const std::string& s) {
  std::vector<std::vector<std::string>> out;
  for (size_t i = 0; i <= s.size(); ++i)
    for (size_t j = i; j <= s.size(); ++j) out.push_back({s.substr(0, i), s.substr(i, j - i), s.substr(j)});
  return out;
}

const std::string kMixed = "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE4\xB8\xAD\xE6\x96\x87!";  // "café 😀 中文!"

}  // namespace

TEST(TextStream, PassesPlainText) {
  TextStream ts;
  EXPECT_EQ(ts.push("hello"), "hello");
  EXPECT_EQ(ts.push(" world"), " world");
  EXPECT_EQ(ts.flush(), "");
  EXPECT_FALSE(ts.stopped());
}

TEST(TextStream, MultibyteSplitAtEveryByte) {
  for (const auto& pieces : splits(kMixed)) {
    TextStream ts;
    EXPECT_EQ(run(ts, pieces), kMixed);
  }
  // One byte per piece: nothing of a character shows before its last byte.
  TextStream ts;
  const std::string emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(ts.push(emoji.substr(0, 1)), "");
  EXPECT_EQ(ts.push(emoji.substr(1, 1)), "");
  EXPECT_EQ(ts.push(emoji.substr(2, 1)), "");
  EXPECT_EQ(ts.push(emoji.substr(3, 1)), emoji);
}

TEST(TextStream, InvalidBytesBecomeReplacementCharacter) {
  const std::string fffd = "\xEF\xBF\xBD";
  TextStream a;
  EXPECT_EQ(run(a, {"a\xFF", "b"}), "a" + fffd + "b");
  // A character cut off by the end of generation.
  TextStream b;
  EXPECT_EQ(b.push("x\xE4\xB8"), "x");
  EXPECT_EQ(b.flush(), fffd);
  // A lead byte followed by a non-continuation byte.
  TextStream c;
  EXPECT_EQ(run(c, {"\xC3", "A"}), fffd + "A");
  // Overlong and surrogate encodings are not UTF-8.
  EXPECT_EQ(utf8::sanitize("\xC0\xAF"), fffd + fffd);
  EXPECT_EQ(utf8::sanitize("\xED\xA0\x80"), fffd + fffd + fffd);
  EXPECT_EQ(utf8::incomplete_suffix("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incomplete_suffix("a\xED\xA0"), 0u);  // can never complete
}

TEST(TextStream, StopStringSplitAcrossPieces) {
  const std::string text = "Hello\nUser: hi";
  for (const auto& pieces : splits(text)) {
    TextStream ts({"\nUser:"});
    EXPECT_EQ(run(ts, pieces), "Hello");
    EXPECT_TRUE(ts.stopped());
    EXPECT_EQ(ts.stop_index(), 0);
  }
}

TEST(TextStream, HoldsBackOnlyPossibleStopPrefixes) {
  TextStream ts({"</s>"});
  EXPECT_EQ(ts.push("a<"), "a");
  EXPECT_EQ(ts.push("/"), "");
  EXPECT_EQ(ts.push("x"), "</x");
  EXPECT_EQ(ts.push("b</s"), "b");
  EXPECT_EQ(ts.push(">tail"), "");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.push("more"), "");
  EXPECT_EQ(ts.flush(), "");
}

TEST(TextStream, StopStringAtStart) {
  TextStream ts({"STOP"});
  EXPECT_EQ(ts.push("STOP and more"), "");
  EXPECT_TRUE(ts.stopped());
  TextStream split({"STOP"});
  EXPECT_EQ(run(split, {"ST", "OP"}), "");
  EXPECT_TRUE(split.stopped());
}

TEST(TextStream, OverlappingStopPrefixes) {
  // "ab" could start "abc" or "abd": held until the next byte decides.
  TextStream a({"abc", "abd"});
  EXPECT_EQ(a.push("ab"), "");
  EXPECT_EQ(a.push("d"), "");
  EXPECT_TRUE(a.stopped());
  EXPECT_EQ(a.stop_index(), 1);

  TextStream b({"abc"});
  EXPECT_EQ(b.push("ab"), "");
  EXPECT_EQ(b.push("d"), "abd");
  EXPECT_FALSE(b.stopped());

  // Self-overlapping stop: "aab" inside "aaab" starts at the second 'a'.
  TextStream c({"aab"});
  EXPECT_EQ(run(c, {"a", "a", "a", "b"}), "a");
  EXPECT_TRUE(c.stopped());

  // The earliest match wins, whatever the list order.
  TextStream d({"world", "lo w"});
  EXPECT_EQ(run(d, {"hello world"}), "hel");
  EXPECT_EQ(d.stop_index(), 1);
}

TEST(TextStream, StopAfterMultibyteAndMultibyteStop) {
  const std::string stop = "\xE3\x80\x82";  // "。" as a stop string
  const std::string text = kMixed + stop + "rest";
  for (const auto& pieces : splits(text)) {
    TextStream ts({stop});
    EXPECT_EQ(run(ts, pieces), kMixed);
    EXPECT_TRUE(ts.stopped());
  }
}

TEST(TextStream, HeldPrefixFlushedAtEnd) {
  TextStream ts({"abc", ""});  // the empty stop string is ignored
  EXPECT_EQ(ts.push("xab"), "x");
  EXPECT_EQ(ts.flush(), "ab");
  EXPECT_FALSE(ts.stopped());
}
