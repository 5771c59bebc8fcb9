#pragma once
// GPT-2's reversible byte <-> printable-codepoint mapping. Byte-level BPE
// vocabularies store token text in this alphabet so that every byte (spaces
// and control bytes included) is a visible character: printable Latin-1
// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
#include <cstdint>
#include <string>
#include <string_view>

namespace kvforge::byte_unicode {

// The UTF-8 encoding of the codepoint standing for byte b.
const std::string& encode_byte(uint8_t b);

// Appends the mapped form of every byte of `raw`.
void encode(std::string_view raw, std::string& out);

// Inverse mapping of a whole token text; false if some character is not in
// the byte alphabet (then `out` holds the bytes decoded so far).
bool decode(std::string_view mapped, std::string& out);

}  // namespace kvforge::byte_unicode
