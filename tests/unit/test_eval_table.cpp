// Table and list formatting of the eval commands and the report.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/list_options.h"
#include "eval/report.h"
#include "eval/table.h"
#include "util/error.h"

using namespace kvforge;

TEST(EvalTable, MarkdownTablePadsAndAligns) {
  const std::string t = format_markdown_table({"policy", "ppl"}, {{"full", "12.5"}, {"window:64,sinks:4", "20.25"}},
                                              {Align::Left, Align::Right});
  EXPECT_EQ(t,
            "| policy            |   ppl |\n"
            "| ----------------- | ----: |\n"
            "| full              |  12.5 |\n"
            "| window:64,sinks:4 | 20.25 |\n");
  EXPECT_THROW(format_markdown_table({"a", "b"}, {{"1"}}), Error);
  EXPECT_THROW(format_markdown_table({}, {}), Error);
}

TEST(EvalTable, NumberFormats) {
  EXPECT_EQ(fmt_bytes(23040), "23.04 KB");
  EXPECT_EQ(fmt_bytes(188743680), "188.74 MB");
  EXPECT_EQ(fmt_bytes(512), "512 B");
  EXPECT_EQ(fmt_bytes(NAN), "-");
  EXPECT_EQ(fmt_percent(0.875), "87.5%");
  EXPECT_EQ(fmt_fixed(12.3456, 2), "12.35");
  EXPECT_EQ(fmt_fixed(NAN, 2), "-");
}

TEST(EvalTable, Lists) {
  EXPECT_EQ(parse_int_list("512, 2048,8192", "--lengths", 16), (std::vector<int32_t>{512, 2048, 8192}));
  EXPECT_THROW(parse_int_list("512,,1", "--lengths", 16), Error);
  EXPECT_THROW(parse_int_list("8", "--lengths", 16), Error);
  EXPECT_THROW(parse_int_list("12x", "--lengths", 16), Error);
  EXPECT_EQ(parse_fraction_list("0.1,0.5,1", "--depths"), (std::vector<double>{0.1, 0.5, 1.0}));
  EXPECT_THROW(parse_fraction_list("1.5", "--depths"), Error);
  EXPECT_EQ(split_policies("full; window:64,sinks:4 ;q8"),
            (std::vector<std::string>{"full", "window:64,sinks:4", "q8"}));
  EXPECT_THROW(split_policies("full;;q8"), Error);
}

namespace {
Report sample_report() {
  Report r;
  r.params.policies = {"full", "q3"};
  r.params.lengths = {256, 512};
  r.params.decode_depth = 256;
  r.params.model_name = "m.gguf";
  r.params.text_path = "/x/botchan.txt";
  PolicyRow full;
  full.spec = "full";
  full.canonical = "full+f16";
  full.bytes_per_token = 23040;
  full.cache_bytes = {256 * 23040.0, 512 * 23040.0};
  full.ppl = {15.5, NAN};
  full.needle = {1.0, 0.5};
  full.decode_tps = 99.5;
  full.curve_bytes = {64 * 23040.0, 512 * 23040.0};
  PolicyRow bad;
  bad.spec = "q3";
  bad.skipped = "unknown KV policy part 'q3'";
  r.rows = {full, bad};
  r.notes = {"`q3` skipped: unknown KV policy part 'q3'"};
  r.curve_lengths = {64, 512};
  return r;
}
}  // namespace

TEST(EvalReport, TableHasARowPerPolicyAndMarksSkippedOnes) {
  const std::string t = report_table(sample_report());
  EXPECT_NE(t.find("| policy "), std::string::npos);
  EXPECT_NE(t.find("cache @256"), std::string::npos);
  EXPECT_NE(t.find("ppl @512"), std::string::npos);
  EXPECT_NE(t.find("needle @512"), std::string::npos);
  EXPECT_NE(t.find("decode tok/s @256"), std::string::npos);
  EXPECT_NE(t.find("full (full+f16)"), std::string::npos);
  EXPECT_NE(t.find("5.90 MB"), std::string::npos);
  EXPECT_NE(t.find("15.500"), std::string::npos);
  EXPECT_NE(t.find("100.0%"), std::string::npos);
  EXPECT_NE(t.find("99.5"), std::string::npos);
  EXPECT_NE(t.find("q3 (skipped)"), std::string::npos);
  int lines = 0;
  for (char c : t) lines += c == '\n';
  EXPECT_EQ(lines, 4);  // header, rule, 2 rows
  const std::string md = report_markdown(sample_report());
  EXPECT_NE(md.find("# kvforge report: m.gguf"), std::string::npos);
  EXPECT_NE(md.find("botchan.txt"), std::string::npos);
  EXPECT_NE(md.find("`q3` skipped"), std::string::npos);
}

TEST(EvalReport, PlotDataAndScriptCoverMeasuredPolicies) {
  const Report r = sample_report();
  const std::string d = report_plot_data(r);
  EXPECT_NE(d.find("64 1.47456"), std::string::npos);  // curve: 64 tokens = 1.47 MB
  EXPECT_NE(d.find("5.89824 15.5 \"@256\" 1"), std::string::npos);
  EXPECT_EQ(d.find("q3"), std::string::npos);
  EXPECT_EQ(d.find("nan"), std::string::npos);
  const std::string g = report_plot_script(r, "r.dat", "r.png");
  EXPECT_NE(g.find("set terminal pngcairo"), std::string::npos);
  EXPECT_NE(g.find("set output \"r.png\""), std::string::npos);
  EXPECT_NE(g.find("index 0 using 1:2 with lines"), std::string::npos);
  EXPECT_NE(g.find("index 2 using 1:($4==1 ? $2 : 1/0) with points pt 7 ps 1.5 lc 1 title \"full\""), std::string::npos);
}
