// libFuzzer target for the KV-cache policy parser (--kv): any string must
// parse or raise kvforge::Error, and a parsed policy must survive the round
// trip through its canonical spelling (parse_kv_policy(describe()) == policy).
#include <cstddef>
#include <cstdint>
#include <string>

#include "kv/kv_policy.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string spec((const char*)data, size);
  kvforge::KvPolicy p;
  try {
    p = kvforge::parse_kv_policy(spec);
  } catch (const kvforge::Error&) {
    return 0;
  }
  if (!(kvforge::parse_kv_policy(p.describe()) == p)) __builtin_trap();  // canonical form does not round-trip
  return 0;
}
