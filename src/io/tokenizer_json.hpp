// src/io/tokenizer_json.hpp — private: typed, path-tracking access to JSON.
//
// Every accessor knows the file name and the dotted field path it reads, so
// a malformed file is reported as
//   tokenizer.json: field "model.vocab": expected an object, got array (hint)
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "scalpel/errors.hpp"

namespace scalpel::tok {

using Json = nlohmann::json;

/// JSON type name as used in error messages ("an object", "array", ...).
inline std::string json_type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::object: return "object";
    case Json::value_t::array: return "array";
    case Json::value_t::string: return "string";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::null: return "null";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    default: return "unknown value";
  }
}

/// Parses `text`; throws FormatError naming `file` and the byte offset.
inline Json parse_json_text(const std::string& text, const std::string& file) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw FormatError(file + ": expected valid JSON, got a syntax error at byte " + std::to_string(e.byte) +
                      " (the file is truncated or not JSON)");
  }
}

/// A JSON value together with where it came from.
class JsonField {
 public:
  JsonField(const Json& value, std::string file, std::string path = "")
      : value_(&value), file_(std::move(file)), path_(std::move(path)) {}

  const Json& json() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  bool is_null() const { return value_->is_null(); }
  bool is_object() const { return value_->is_object(); }
  bool is_array() const { return value_->is_array(); }
  bool is_string() const { return value_->is_string(); }

  /// "file: field "path"" for messages.
  std::string where() const {
    return path_.empty() ? file_ : file_ + ": field \"" + path_ + "\"";
  }

  [[noreturn]] void fail(const std::string& expected, const std::string& hint = "") const {
    std::string got = json_type_name(*value_);
    if (value_->is_string()) got += " \"" + value_->get<std::string>() + "\"";
    throw FormatError(where() + ": expected " + expected + ", got " + got + (hint.empty() ? "" : " (" + hint + ")"));
  }

  /// Required member `key` of this object.
  JsonField at(const std::string& key, const std::string& hint = "") const {
    if (!value_->is_object()) fail("an object", hint);
    auto it = value_->find(key);
    if (it == value_->end()) {
      throw FormatError(file_ + ": field \"" + child_path(key) + "\": expected a value, got nothing (the field is missing" +
                        (hint.empty() ? ")" : "; " + hint + ")"));
    }
    return JsonField(*it, file_, child_path(key));
  }

  /// Member `key` when present and not null.
  std::optional<JsonField> find(const std::string& key) const {
    if (!value_->is_object()) fail("an object");
    auto it = value_->find(key);
    if (it == value_->end() || it->is_null()) return std::nullopt;
    return JsonField(*it, file_, child_path(key));
  }

  bool has(const std::string& key) const { return value_->is_object() && value_->contains(key); }

  JsonField index(std::size_t i) const {
    return JsonField((*value_)[i], file_, path_ + "[" + std::to_string(i) + "]");
  }
  std::size_t size() const { return value_->size(); }

  const std::string& str() const {
    if (!value_->is_string()) fail("a string");
    return value_->get_ref<const std::string&>();
  }
  bool boolean() const {
    if (!value_->is_boolean()) fail("a boolean");
    return value_->get<bool>();
  }
  int64_t integer() const {
    if (value_->is_number_unsigned()) {
      const auto v = value_->get<uint64_t>();
      if (v > static_cast<uint64_t>(INT64_MAX)) fail("an integer that fits in 64 bits");
      return static_cast<int64_t>(v);
    }
    if (!value_->is_number_integer()) fail("an integer");
    return value_->get<int64_t>();
  }
  double number() const {
    if (!value_->is_number()) fail("a number");
    return value_->get<double>();
  }

  // Optional members with defaults.
  bool opt_bool(const std::string& key, bool fallback) const {
    auto f = find(key);
    return f ? f->boolean() : fallback;
  }
  std::optional<std::string> opt_string(const std::string& key) const {
    auto f = find(key);
    if (!f) return std::nullopt;
    return f->str();
  }
  int64_t opt_int(const std::string& key, int64_t fallback) const {
    auto f = find(key);
    return f ? f->integer() : fallback;
  }

 private:
  std::string child_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const Json* value_;
  std::string file_;
  std::string path_;
};

}  // namespace scalpel::tok
