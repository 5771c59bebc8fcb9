// `kvforge inspect FILE`: everything a GGUF file says about itself — header,
// every metadata key with its type and value, and the tensor table — as text
// for people or as JSON (--json) for scripts and tests.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "frontend/command.h"
#include "gguf/gguf.h"

namespace kvforge::cli {
namespace {

using gguf::Value;
using gguf::ValueType;

// f32 metadata is widened to double on read; print it as the shortest text
// that reads back to the same float (1e-05, not 9.999999747378752e-06).
std::string fmt_number(double d, ValueType t) {
  return t == ValueType::FLOAT32 ? fmt::format("{}", (float)d) : fmt::format("{}", d);
}

std::string escape(const std::string& s, size_t max_chars) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == max_chars) {
      out += fmt::format("\"... ({} bytes)", s.size());
      return out;
    }
    const unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') out += {'\\', (char)c};
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += (char)c;
  }
  return out + "\"";
}

std::string type_label(const Value& v) {
  if (v.type != ValueType::ARRAY) return gguf::value_type_name(v.type);
  return fmt::format("array[{}]", gguf::value_type_name(v.array_type));
}

std::string text_value(const Value& v, bool full) {
  const size_t max_str = full ? std::string::npos : 160;
  const size_t max_elems = full ? SIZE_MAX : 8;
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return escape(x, max_str);
        } else if constexpr (std::is_same_v<T, double>) {
          return fmt_number(x, v.type);
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_arithmetic_v<T>) {
          return fmt::format("{}", x);
        } else {  // arrays
          std::string out = "[";
          size_t i = 0;
          for (const auto& e : x) {
            if (i == max_elems) {
              out += ", ...";
              break;
            }
            if (i++) out += ", ";
            using E = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<E, std::string>) out += escape(e, 60);
            else if constexpr (std::is_same_v<E, double>) out += fmt_number(e, v.array_type);
            else if constexpr (std::is_same_v<E, bool>) out += e ? "true" : "false";
            else out += fmt::format("{}", e);
          }
          return out + fmt::format("] ({} elements)", x.size());
        }
      },
      v.data);
}

// The JSON number for a metadata float: the shortest text that reads back to
// the stored value. strtod, not stod: stod throws on subnormals.
double json_number(double d, ValueType t) { return std::strtod(fmt_number(d, t).c_str(), nullptr); }

nlohmann::json json_value(const Value& v) {
  return std::visit(
      [&](const auto& x) -> nlohmann::json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, double>) {
          return json_number(x, v.type);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          nlohmann::json a = nlohmann::json::array();
          for (double d : x) a.push_back(json_number(d, v.array_type));
          return a;
        } else {
          return x;
        }
      },
      v.data);
}

std::string shape_text(const gguf::TensorInfo& t) {
  std::string s = "[";
  for (int d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}

void print_text(const gguf::File& f, bool full) {
  std::printf("file: %s\nversion: %u\nalignment: %llu\nmetadata: %zu keys\n", f.path().c_str(), f.version(),
              (unsigned long long)f.alignment(), f.metadata().size());
  for (const auto& [key, v] : f.metadata())
    std::printf("  %s (%s) = %s\n", key.c_str(), type_label(v).c_str(), text_value(v, full).c_str());
  uint64_t total = 0;
  size_t wname = 4;
  for (const auto& t : f.tensors()) {
    total += t.nbytes;
    wname = std::max(wname, t.name.size());
  }
  std::printf("tensors: %zu (%llu bytes of data; shape is ne, contiguous dimension first)\n", f.tensors().size(),
              (unsigned long long)total);
  std::printf("  %-*s  %-6s  %-20s  %s\n", (int)wname, "name", "type", "shape", "bytes");
  for (const auto& t : f.tensors())
    std::printf("  %-*s  %-6s  %-20s  %zu\n", (int)wname, t.name.c_str(), type_name((uint32_t)t.type).c_str(),
                shape_text(t).c_str(), t.nbytes);
}

void print_json(const gguf::File& f) {
  nlohmann::json j;
  j["path"] = f.path();
  j["version"] = f.version();
  j["alignment"] = f.alignment();
  nlohmann::json md = nlohmann::json::object();
  for (const auto& [key, v] : f.metadata()) {
    nlohmann::json e = {{"type", gguf::value_type_name(v.type)}, {"value", json_value(v)}};
    if (v.type == ValueType::ARRAY) {
      e["element_type"] = gguf::value_type_name(v.array_type);
      e["length"] = e["value"].size();
    }
    md[key] = std::move(e);
  }
  j["metadata"] = std::move(md);
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : f.tensors())
    ts.push_back({{"name", t.name},
                  {"type", type_name((uint32_t)t.type)},
                  {"ne", std::vector<int64_t>(t.ne, t.ne + t.n_dims)},
                  {"offset", t.offset},
                  {"bytes", t.nbytes}});
  j["tensors"] = std::move(ts);
  // Strings in a file need not be UTF-8; replace bad bytes rather than fail.
  std::puts(j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

CommandRegistrar reg(20, [](CLI::App& root) {
  auto* c = root.add_subcommand("inspect", "Show a GGUF file's header, metadata and tensor table");
  c->footer(
      "Text output abbreviates long strings and arrays (use --full to show all).\n"
      "--json prints one JSON object: path, version, alignment, metadata\n"
      "({key: {type, value[, element_type, length]}}, arrays in full) and tensors\n"
      "([{name, type, ne, offset, bytes}]; ne lists the contiguous dimension first).");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto full = std::make_shared<bool>(false);
  c->add_option("FILE", *path, "GGUF model file")->required();
  c->add_flag("--json", *json, "Print machine-readable JSON instead of text");
  c->add_flag("--full", *full, "Do not abbreviate long strings and arrays in text output");
  c->callback([path, json, full] {
    auto f = gguf::File::open(*path);
    if (*json) print_json(*f);
    else print_text(*f, *full);
  });
});

}  // namespace
}  // namespace kvforge::cli
