// Tokenizers built from small hand-made vocabularies.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

using namespace kvforge;

namespace {

// A byte-level vocabulary: the 256 byte characters, then `extra` tokens.
VocabData byte_vocab(std::vector<std::string> extra, std::vector<std::string> merges, std::string pre = "gpt2") {
  VocabData v;
  v.model = "gpt2";
  v.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_unicode::encode_byte(static_cast<uint8_t>(b)));
  v.token_types.assign(256, TokenType::Normal);
  for (auto& e : extra) {
    v.tokens.push_back(e);
    v.token_types.push_back(TokenType::Normal);
  }
  v.merges = std::move(merges);
  return v;
}

TokenId add_token(VocabData& v, const std::string& text, TokenType type, float score = 0) {
  v.tokens.push_back(text);
  v.token_types.push_back(type);
  if (!v.scores.empty()) v.scores.push_back(score);
  return static_cast<TokenId>(v.tokens.size() - 1);
}

std::vector<std::string> split(const std::string& pre, const std::string& text) {
  std::vector<std::string> out;
  for (auto p : PreTokenizer::for_name(pre).split(text)) out.emplace_back(p);
  return out;
}

// Random valid UTF-8 from a mix of ASCII, Latin, CJK, emoji and whitespace.
std::string random_utf8(std::mt19937& rng, size_t n_chars) {
  static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x24F}, {0x370, 0x3FF}, {0x400, 0x4FF},
                                       {0x4E00, 0x4F00}, {0x1F600, 0x1F64F}, {0x200B, 0x200D}, {0x3000, 0x3000}};
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) {
    const auto& r = ranges[rng() % std::size(ranges)];
    utf8::append(s, r[0] + rng() % (r[1] - r[0] + 1));
  }
  return s;
}

}  // namespace

TEST(ByteUnicode, MapsEveryByteReversibly) {
  EXPECT_EQ(byte_unicode::encode_byte(' '), "\xC4\xA0");  // U+0120 'Ġ'
  EXPECT_EQ(byte_unicode::encode_byte('A'), "A");
  EXPECT_EQ(byte_unicode::encode_byte('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  std::string all, mapped, back;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  byte_unicode::encode(all, mapped);
  ASSERT_TRUE(byte_unicode::decode(mapped, back));
  EXPECT_EQ(back, all);
}

TEST(PreTokenizer, Gpt2SplitsWordsAndContractions) {
  EXPECT_EQ(split("gpt2", "Hello world's  end\n"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " end", "\n"}));
  EXPECT_EQ(split("gpt2", "I'LL do 1234"), (std::vector<std::string>{"I", "'", "LL", " do", " 1234"}));
}

TEST(PreTokenizer, SmollmSplitsDigitsFirst) {
  EXPECT_EQ(split("smollm", "a 123"), (std::vector<std::string>{"a", " ", "1", "2", "3"}));
}

TEST(PreTokenizer, Llama3AndQwen2) {
  EXPECT_EQ(split("llama-bpe", "x 1234567 I'LL"), (std::vector<std::string>{"x", " ", "123", "456", "7", " I", "'LL"}));
  EXPECT_EQ(split("qwen2", "12 ab"), (std::vector<std::string>{"1", "2", " ab"}));
  EXPECT_EQ(split("llama-bpe", "a\n\n  b"), (std::vector<std::string>{"a", "\n\n", " ", " b"}));
}

TEST(PreTokenizer, PiecesCoverTextEvenWithInvalidUtf8) {
  std::string s = "ab\xFF" "cd \xC3";
  std::string joined;
  for (auto p : PreTokenizer::for_name("smollm").split(s)) joined += p;
  EXPECT_EQ(joined, s);
}

TEST(PreTokenizer, UnknownNameIsAnError) {
  EXPECT_THROW(PreTokenizer::for_name("no-such-pre"), Error);
  EXPECT_THROW(Tokenizer::create(byte_vocab({}, {}, "no-such-pre")), Error);
}

TEST(BpeTokenizer, MergesApplyByRank) {
  // Same vocabulary, two merge orders: the lower rank wins at "abc".
  auto t1 = Tokenizer::create(byte_vocab({"ab", "bc"}, {"b c", "a b"}));
  auto t2 = Tokenizer::create(byte_vocab({"ab", "bc"}, {"a b", "b c"}));
  EXPECT_EQ(t1->encode("abc", false, true), (std::vector<TokenId>{'a', 257}));
  EXPECT_EQ(t2->encode("abc", false, true), (std::vector<TokenId>{256, 'c'}));
  // Chained merges, leftmost first among equal ranks.
  auto t3 = Tokenizer::create(byte_vocab({"ab", "abab"}, {"a b", "ab ab"}));
  EXPECT_EQ(t3->encode("ababab", false, true), (std::vector<TokenId>{257, 256}));
}

TEST(BpeTokenizer, SpaceIsByteMapped) {
  auto t = Tokenizer::create(byte_vocab({"\xC4\xA0" "a"}, {"\xC4\xA0 a"}));
  EXPECT_EQ(t->encode("a a", false, true), (std::vector<TokenId>{'a', 256}));
  EXPECT_EQ(t->token_to_piece(256), " a");
}

TEST(BpeTokenizer, SpecialTokensSplitFirst) {
  VocabData v = byte_vocab({}, {});
  TokenId start = add_token(v, "<|im_start|>", TokenType::Control);
  TokenId end = add_token(v, "<|im_end|>", TokenType::Control);
  TokenId longer = add_token(v, "<|im_start|>x", TokenType::Control);
  TokenId user = add_token(v, "<tool>", TokenType::UserDefined);
  v.eos = 0;
  auto t = Tokenizer::create(v);
  EXPECT_EQ(t->encode("a<|im_start|>b<|im_end|>", false, true), (std::vector<TokenId>{'a', start, 'b', end}));
  EXPECT_EQ(t->encode("<|im_start|>x<|im_start|>", false, true), (std::vector<TokenId>{longer, start}));
  // Without parse_special the markers are text, user-defined tokens still match.
  auto plain = t->encode("<|im_end|><tool>", false, false);
  EXPECT_EQ(plain.size(), 11u);
  EXPECT_EQ(plain.back(), user);
  // Decoding skips control tokens unless asked.
  EXPECT_EQ(t->decode({'a', start, 'b'}), "ab");
  EXPECT_EQ(t->decode({'a', start, 'b'}, true), "a<|im_start|>b");
  EXPECT_EQ(t->token_type(start), TokenType::Control);
  EXPECT_TRUE(t->is_end_of_generation(end));  // by name: a Control <|im_end|>
  EXPECT_TRUE(t->is_end_of_generation(0));    // eos
  EXPECT_FALSE(t->is_end_of_generation(start));
  EXPECT_EQ(t->find_token("<|im_end|>"), end);
  EXPECT_EQ(t->find_token("nope"), -1);
}

TEST(BpeTokenizer, AddsBosOnlyWhenVocabularyAsks) {
  VocabData v = byte_vocab({}, {});
  v.bos = add_token(v, "<s>", TokenType::Control);
  auto no = Tokenizer::create(v);
  EXPECT_EQ(no->encode("a", true, true), (std::vector<TokenId>{'a'}));
  v.add_bos = true;
  auto yes = Tokenizer::create(v);
  EXPECT_EQ(yes->encode("a", true, true), (std::vector<TokenId>{v.bos, 'a'}));
  EXPECT_EQ(yes->encode("a", false, true), (std::vector<TokenId>{'a'}));
  EXPECT_EQ(yes->encode("", true, true), (std::vector<TokenId>{v.bos}));
}

TEST(BpeTokenizer, RoundTripsRandomUtf8) {
  auto t = Tokenizer::create(byte_vocab({"\xC4\xA0t", "he", "\xC4\xA0the"}, {"\xC4\xA0 t", "h e", "\xC4\xA0t he"}, "smollm"));
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string s = random_utf8(rng, rng() % 40) + " the";
    EXPECT_EQ(t->decode(t->encode(s, true, false)), s);
  }
  std::string bad = "x\xFF\xC3(";  // invalid UTF-8 also survives
  EXPECT_EQ(t->decode(t->encode(bad, false, false)), bad);
}

// A 1 MiB text: every line ends in "\n", where the pre-tokenizer splits
// anyway, so the whole text must encode as its lines do one by one (the
// merges stay local to a word: a merge loop that ran across the text would
// show here as a wrong split, or as a test that never ends). Its speed is a
// benchmark's business, not a timed test's.
TEST(BpeTokenizer, LongTextEncodesAsItsLines) {
  auto t = Tokenizer::create(byte_vocab({"\xC4\xA0t", "he", "\xC4\xA0the"}, {"\xC4\xA0 t", "h e", "\xC4\xA0t he"}, "smollm"));
  std::mt19937 rng(1);
  std::string text;
  std::vector<TokenId> by_line;
  while (text.size() < (1u << 20)) {
    const std::string line = random_utf8(rng, 200) + " the end 12345.\n";
    text += line;
    const auto ids = t->encode(line, false, true);
    by_line.insert(by_line.end(), ids.begin(), ids.end());
  }
  const auto ids = t->encode(text, false, true);
  EXPECT_EQ(ids, by_line);
  EXPECT_EQ(t->decode(ids), text);
}

namespace {
// A SentencePiece-style vocabulary: <unk>, <s>, </s>, optional byte tokens, pieces with scores.
VocabData spm_vocab(bool bytes) {
  VocabData v;
  v.model = "llama";
  v.scores = {0.0f};
  v.tokens = {"<unk>"};
  v.token_types = {TokenType::Unknown};
  v.unk = 0;
  v.bos = add_token(v, "<s>", TokenType::Control);
  v.eos = add_token(v, "</s>", TokenType::Control);
  if (bytes) {
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      add_token(v, buf, TokenType::Byte);
    }
  }
  const char* pieces[] = {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "bc", "\xE2\x96\x81" "ab"};
  float scores[] = {-1, -2, -3, -4, -5, -6, -7, -8};
  for (size_t i = 0; i < std::size(pieces); ++i) add_token(v, pieces[i], TokenType::Normal, scores[i]);
  v.add_bos = true;
  return v;
}
}  // namespace

TEST(SpmTokenizer, MergesByScoreWithSpacePrefix) {
  VocabData v = spm_vocab(true);
  auto t = Tokenizer::create(v);
  auto id = [&](const char* s) { return t->find_token(s); };
  // "▁abc": ▁a (-5) beats ab (-6) and bc (-7); then bc; "▁ab" never forms.
  EXPECT_EQ(t->encode("abc", true, true), (std::vector<TokenId>{v.bos, id("\xE2\x96\x81" "a"), id("bc")}));
  EXPECT_EQ(t->encode("abc", false, true), (std::vector<TokenId>{id("\xE2\x96\x81" "a"), id("bc")}));
  EXPECT_EQ(t->decode(t->encode("abc", true, true)), "abc");
  EXPECT_EQ(t->token_to_piece(id("\xE2\x96\x81" "a")), " a");
}

TEST(SpmTokenizer, ByteFallbackAndUnk) {
  auto t = Tokenizer::create(spm_vocab(true));
  auto ids = t->encode("\xC3\xA9", false, true);  // é: not a piece, so its two bytes
  EXPECT_EQ(ids, (std::vector<TokenId>{t->find_token("\xE2\x96\x81"), t->find_token("<0xC3>"), t->find_token("<0xA9>")}));
  EXPECT_EQ(t->decode(ids), "\xC3\xA9");
  auto no_bytes = Tokenizer::create(spm_vocab(false));
  EXPECT_EQ(no_bytes->encode("\xC3\xA9", false, true), (std::vector<TokenId>{no_bytes->find_token("\xE2\x96\x81"), 0}));
}

TEST(SpmTokenizer, RoundTripsRandomUtf8) {
  VocabData v = spm_vocab(true);
  auto t = Tokenizer::create(v);
  v.add_space_prefix = false;
  auto t2 = Tokenizer::create(v);
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    std::string s = random_utf8(rng, rng() % 40) + " ab c";
    EXPECT_EQ(t->decode(t->encode(s, true, false)), s);
    EXPECT_EQ(t2->decode(t2->encode(s, true, false)), s);
  }
}

TEST(SpmTokenizer, SpacePrefixAfterSpecialTokens) {
  VocabData v = spm_vocab(true);
  auto t = Tokenizer::create(v);
  auto id = [&](const char* s) { return t->find_token(s); };
  EXPECT_EQ(t->encode("a</s>a", false, true), (std::vector<TokenId>{id("\xE2\x96\x81" "a"), v.eos, id("\xE2\x96\x81" "a")}));
}

TEST(ChatTemplate, SmolLM2DefaultSystemAndChunks) {
  const std::string jinja =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
      "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  ChatTemplate t = detect_chat_template(jinja);
  EXPECT_EQ(t.format, ChatFormat::ChatML);
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  std::vector<ChatMessage> m = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  EXPECT_EQ(render_chat(t, {m[0]}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(t, {{"system", "S"}, m[0]}, false), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  // Qwen-style escaped newline inside the Jinja literal.
  EXPECT_EQ(detect_chat_template("{{- '<|im_start|>system\\nYou are Q.<|im_end|>\\n' }}").default_system, "You are Q.");
}

TEST(ChatTemplate, ChunksConcatenateToTheWhole) {
  std::vector<ChatMessage> m = {{"system", " sys "}, {"user", "Hi "}, {"assistant", "Hello!"}, {"user", "Bye"}};
  std::vector<ChatMessage> no_sys(m.begin() + 1, m.end());
  for (ChatTemplate t : {ChatTemplate(ChatFormat::ChatML, "Default"), ChatTemplate(ChatFormat::Llama3),
                         ChatTemplate(ChatFormat::Raw), ChatTemplate(ChatFormat::SmolLM3),
                         ChatTemplate(ChatFormat::Gemma), ChatTemplate(ChatFormat::Phi3),
                         ChatTemplate(ChatFormat::Phi3Compact)}) {
    for (const auto* msgs : {&m, &no_sys}) {
      for (bool gen : {false, true}) {
        std::string whole = render_chat(t, *msgs, gen, true);
        // Gemma's system message and the user message after it are one turn.
        for (size_t k = t.format == ChatFormat::Gemma && msgs == &m ? 2 : 1; k <= msgs->size(); ++k) {
          std::vector<ChatMessage> a(msgs->begin(), msgs->begin() + k), b(msgs->begin() + k, msgs->end());
          EXPECT_EQ(render_chat(t, a, false, true) + render_chat(t, b, gen, false), whole)
              << chat_format_name(t.format) << " k=" << k;
        }
      }
    }
  }
}

TEST(ChatTemplate, GeneratedReplyLinesUpWithNextChunk) {
  std::vector<ChatMessage> m = {{"user", "Hi"}};
  for (ChatFormat f : {ChatFormat::ChatML, ChatFormat::Llama3, ChatFormat::SmolLM3, ChatFormat::Gemma, ChatFormat::Phi3,
                       ChatFormat::Phi3Compact}) {
    std::string cached = render_chat(f, m, true) + "Hello!" + chat_turn_end(f) + chat_turn_separator(f);
    auto m2 = m;
    m2.push_back({"assistant", "Hello!"});
    EXPECT_EQ(cached, render_chat(f, m2, false)) << chat_format_name(f);
  }
}

TEST(ChatTemplate, Llama3Format) {
  EXPECT_EQ(render_chat(ChatFormat::Llama3, {{"user", " Hi\n"}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(parse_chat_format("llama3"), ChatFormat::Llama3);
  EXPECT_THROW(parse_chat_format("vicuna"), Error);
  EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' }}").format, ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_template("").format, ChatFormat::Raw);
}

// The templates of Qwen3, SmolLM3, Gemma 2/3, Phi-3 and Phi-4-mini, reduced
// to the markers detection looks at, and what each renders.
TEST(ChatTemplate, NewFamilies) {
  EXPECT_EQ(detect_chat_template("{%- if enable_thinking %}{{- '<|im_start|>assistant\\n<think>' }}").format,
            ChatFormat::ChatML);  // Qwen3
  EXPECT_EQ(detect_chat_template("{{- \"<|im_start|>system\\n\" -}}{{- \"Reasoning Mode: \" }}").format,
            ChatFormat::SmolLM3);
  EXPECT_EQ(detect_chat_template("{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' }}").format, ChatFormat::Gemma);
  EXPECT_EQ(detect_chat_template("{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{{ '<|assistant|>\\n' }}").format,
            ChatFormat::Phi3);
  EXPECT_EQ(detect_chat_template("{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
                                 "{{ '<|assistant|>' }}").format,
            ChatFormat::Phi3Compact);
  try {
    detect_chat_template("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
    ADD_FAILURE() << "an unknown template was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported chat template"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[INST]"), std::string::npos);
  }

  EXPECT_EQ(render_chat(ChatFormat::Gemma, {{"system", "Be brief."}, {"user", " Hi "}}, true),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(render_chat(ChatFormat::Gemma, {{"assistant", "Yo"}}, false, false), "<start_of_turn>model\nYo<end_of_turn>\n");
  EXPECT_EQ(render_chat(ChatFormat::Phi3, {{"system", "S"}, {"user", "Hi"}}, true),
            "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
  EXPECT_EQ(render_chat(ChatFormat::Phi3Compact, {{"user", "Hi"}}, true), "<|user|>Hi<|end|><|assistant|>");
  // SmolLM3: the system header (no <|im_end|>), flags stripped, /no_think's empty think block.
  const std::string s = render_chat(ChatFormat::SmolLM3, {{"system", "Be brief. /no_think"}, {"user", "Hi"}}, true);
  EXPECT_EQ(s.rfind("<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: ", 0), 0u);
  EXPECT_NE(s.find("\nReasoning Mode: /no_think\n\n## Custom Instructions\n\nBe brief.\n\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n\n</think>\n"),
            std::string::npos);
  const std::string d = render_chat(ChatFormat::SmolLM3, {{"user", "Hi"}}, true);
  EXPECT_NE(d.find("Reasoning Mode: /think\n"), std::string::npos);
  const std::string tail = "conclusion.\n\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(d.substr(d.size() - tail.size()), tail);
  for (ChatFormat f : {ChatFormat::SmolLM3, ChatFormat::Gemma, ChatFormat::Phi3, ChatFormat::Phi3Compact})
    EXPECT_EQ(parse_chat_format(chat_format_name(f)), f);
}

// The real default model, pulled by the test setup (the Python tests compare
// its ids with llama.cpp; here: decoding, round trips, end-of-generation).
// Missing, it is a failure, not a skip: the suite must not pass untested.
#include <filesystem>

#include "gguf/gguf.h"
#include "util/model_store.h"

TEST(RealModel, SmolLM2RoundTripsAndMarkers) {
  const std::filesystem::path p = default_model_path();  // where `kvforge pull` puts it ($XDG_CACHE_HOME too)
  ASSERT_TRUE(std::filesystem::exists(p)) << "no " << p << ": run `build/kvforge pull` (scripts/setup.sh does)";
  auto file = gguf::File::open(p.string());
  auto t = Tokenizer::from_gguf(*file);
  EXPECT_EQ(t->n_vocab(), 49152);
  EXPECT_EQ(t->encode("Hello world", true, true), (std::vector<TokenId>{19556, 905}));
  TokenId im_end = t->find_token("<|im_end|>");
  EXPECT_TRUE(t->is_end_of_generation(im_end));
  EXPECT_TRUE(t->is_end_of_generation(t->find_token("<|endoftext|>")));
  EXPECT_FALSE(t->is_end_of_generation(t->find_token("<|im_start|>")));
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_utf8(rng, rng() % 60);
    EXPECT_EQ(t->decode(t->encode(s, true, false)), s);
  }
  ChatTemplate ct = detect_chat_template(*file);
  EXPECT_EQ(ct.format, ChatFormat::ChatML);
  EXPECT_EQ(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}
