// Pair datasets for causal tracing (see scalpel/trace/pairs.hpp).
#include "scalpel/trace/pairs.hpp"

#include <nlohmann/json.hpp>

#include "io/json_rows.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

using json = nlohmann::ordered_json;

// Calls fn(object, "file:line") for each row of a JSONL file (blank and "//" lines skipped).
template <typename Fn>
void for_each_object(const std::string& path, Fn fn) {
  size_t objects = 0;
  for (const auto& row : detail::read_json_rows(path, "pair dataset " + path)) {
    if (!row.value.is_object()) throw FormatError(detail::expected_got(row.where, "a JSON object", row.value.type_name()));
    fn(row.value, row.where);
    ++objects;
  }
  if (objects == 0) throw FormatError(detail::expected_got("pair dataset " + path, "at least one JSON object line", "none"));
}

std::string text(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw FormatError(detail::expected_got(where, std::string("key \"") + key + "\"", "missing"));
  if (!j[key].is_string())
    throw FormatError(detail::expected_got(where + ": " + key, "a string", j[key].type_name()));
  return j[key].get<std::string>();
}

// "<one>": string or "<many>": [strings]; required or not.
std::vector<std::string> texts(const json& j, const char* one, const char* many, const std::string& where, bool required) {
  if (j.contains(one)) return {text(j, one, where)};
  if (j.contains(many)) {
    const auto& a = j[many];
    if (!a.is_array() || a.empty())
      throw FormatError(detail::expected_got(where + ": " + many, "a non-empty list of strings", a.dump()));
    std::vector<std::string> out;
    for (const auto& x : a) {
      if (!x.is_string()) throw FormatError(detail::expected_got(where + ": " + many, "strings", x.type_name()));
      out.push_back(x.get<std::string>());
    }
    return out;
  }
  if (required)
    throw FormatError(detail::expected_got(where, std::string("key \"") + one + "\" or \"" + many + "\"", "missing"));
  return {};
}

int64_t next_token(const Tokenizer& tok, const std::string& prompt, const std::vector<int64_t>& prompt_ids,
                   const std::string& answer, const std::string& what) {
  auto ids = tok.encode(prompt + answer);
  if (ids.size() <= prompt_ids.size() || !std::equal(prompt_ids.begin(), prompt_ids.end(), ids.begin()))
    throw InvalidArgument(detail::expected_got(what, "an answer that adds tokens after the prompt's",
                                               "\"" + answer + "\" changes or adds no tokens",
                                               "start the answer with a space, e.g. \" Tom\""));
  return ids[prompt_ids.size()];
}

}  // namespace

std::vector<CompletionPair> load_completion_pairs(const std::string& path) {
  std::vector<CompletionPair> out;
  for_each_object(path, [&](const json& j, const std::string& where) {
    out.push_back({text(j, "prompt", where), text(j, "harmful", where), text(j, "neutral", where)});
  });
  return out;
}

std::vector<PromptPair> load_prompt_pairs(const std::string& path) {
  std::vector<PromptPair> out;
  for_each_object(path, [&](const json& j, const std::string& where) {
    out.push_back({text(j, "clean", where), text(j, "corrupted", where), texts(j, "answer", "answers", where, true),
                   texts(j, "corrupted_answer", "corrupted_answers", where, false)});
  });
  return out;
}

TokenizedPromptPair tokenize_prompt_pair(const Tokenizer& tok, const PromptPair& pair) {
  TokenizedPromptPair t;
  t.clean = tok.encode(pair.clean);
  t.corrupted = tok.encode(pair.corrupted);
  if (t.clean.size() != t.corrupted.size())
    throw InvalidArgument(detail::expected_got("prompt pair \"" + pair.clean + "\" / \"" + pair.corrupted + "\"",
                                               "the same number of tokens (positions must align)",
                                               std::to_string(t.clean.size()) + " vs " + std::to_string(t.corrupted.size()),
                                               "reword one prompt, or choose names / words of equal token length"));
  if (pair.answers.empty()) throw InvalidArgument(detail::expected_got("prompt pair answers", "at least one", "none"));
  t.answer = next_token(tok, pair.clean, t.clean, pair.answers[0], "answer");
  if (!pair.corrupted_answers.empty())
    t.corrupted_answer = next_token(tok, pair.corrupted, t.corrupted, pair.corrupted_answers[0], "corrupted_answer");
  return t;
}

}  // namespace scalpel
