// libFuzzer target for the OpenAI request parser of `kvforge serve`: any body
// must parse or raise ApiError with a 4xx status (never another exception, a
// crash or a hang), for both endpoints.
#include <cstddef>
#include <cstdint>
#include <string>

#include "serve/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body((const char*)data, size);
  for (auto ep : {kvforge::serve::Endpoint::Chat, kvforge::serve::Endpoint::Completions}) {
    try {
      const auto r = kvforge::serve::parse_completion_request(body, ep);
      if (r.n < 1 || r.logprobs > 20 || (ep == kvforge::serve::Endpoint::Chat && r.messages.empty())) __builtin_trap();
    } catch (const kvforge::serve::ApiError& e) {
      if (e.status < 400 || e.status > 499) __builtin_trap();
    }
  }
  return 0;
}
