// src/io/tokenizer_loader.cpp — building a Tokenizer from files.
//
// Sources, in order of preference for a directory:
//   tokenizer.json                      the full HF pipeline
//   vocab.json + merges.txt             the pipeline transformers builds for the
//                                       tokenizer_class (GPT2Tokenizer, Qwen2Tokenizer)
// plus, when present beside it: tokenizer_config.json (special tokens, chat
// template, added tokens for vocab.json), special_tokens_map.json (fallback
// special tokens), chat_template.jinja, config.json (model_type).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer_impl.hpp"
#include "io/tokenizer_json.hpp"
#include "io/tokenizer_pipeline.hpp"

namespace fs = std::filesystem;

namespace scalpel::tok {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw FileNotFound("tokenizer: file \"" + path.string() + "\": expected a readable file, got one that cannot be opened");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> read_optional(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  return read_text_file(path);
}

/// An added token from a tokenizer.json "added_tokens" entry or a
/// tokenizer_config.json "added_tokens_decoder" value.
AddedToken parse_added_token(const JsonField& j, int64_t id) {
  AddedToken t;
  t.id = id;
  t.content = j.at("content").str();
  t.single_word = j.opt_bool("single_word", false);
  t.lstrip = j.opt_bool("lstrip", false);
  t.rstrip = j.opt_bool("rstrip", false);
  t.special = j.opt_bool("special", false);
  t.normalized = j.opt_bool("normalized", !t.special);  // HF default: special tokens are not normalized
  return t;
}

std::vector<std::pair<std::string, std::string>> parse_merges(const JsonField& merges) {
  if (!merges.is_array()) merges.fail("an array of merges");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const JsonField m = merges.index(i);
    if (m.is_string()) {
      const std::string& s = m.str();
      const auto space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        m.fail("a merge \"left right\" with exactly one space");
      }
      out.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array()) {
      if (m.size() != 2) m.fail("a merge [left, right] of two strings");
      out.emplace_back(m.index(0).str(), m.index(1).str());
    } else {
      m.fail("a merge (\"left right\" or [left, right])");
    }
  }
  return out;
}

std::unique_ptr<BpeModel> parse_model(const JsonField& root) {
  const JsonField model = root.at("model", "is this a tokenizer.json file?");
  if (!model.is_object()) model.fail("an object", "is this a tokenizer.json file?");
  static const std::vector<std::string> kSupported = {"BPE"};
  if (auto type = model.find("type")) {
    const std::string& t = type->str();
    if (t != "BPE") {
      throw Unsupported(type->where() + ": expected one of " + join(kSupported) + ", got \"" + t +
                        "\" (scalpel implements BPE tokenizers only; Unigram, WordPiece and WordLevel are not "
                        "supported)");
    }
  } else {
    // Untagged model (old files): decide by shape, as HF's untagged deserializer does.
    if (model.has("vocab") && model.json()["vocab"].is_array()) {
      throw Unsupported(model.where() + ": expected a BPE model, got a Unigram model (scalpel implements BPE only)");
    }
    if (!model.has("merges")) {
      throw Unsupported(model.where() +
                        ": expected a BPE model (with \"merges\"), got a model without merges (WordPiece / "
                        "WordLevel are not supported)");
    }
  }
  const JsonField vocab = model.at("vocab", "is this a tokenizer.json file?");
  if (!vocab.is_object()) vocab.fail("an object", "is this a tokenizer.json file?");
  std::vector<std::pair<std::string, int64_t>> entries;
  entries.reserve(vocab.size());
  for (auto it = vocab.json().begin(); it != vocab.json().end(); ++it) {
    entries.emplace_back(it.key(), JsonField(it.value(), vocab.file(), vocab.path() + "." + it.key()).integer());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (auto m = model.find("merges")) merges = parse_merges(*m);

  if (auto dropout = model.find("dropout")) {
    if (dropout->number() != 0.0) {
      throw Unsupported(dropout->where() + ": expected null (no BPE dropout), got " +
                        std::to_string(dropout->number()) + " (dropout makes encoding random; scalpel does not support it)");
    }
  }
  BpeOptions options;
  options.unk_token = model.opt_string("unk_token");
  options.continuing_subword_prefix = model.opt_string("continuing_subword_prefix");
  options.end_of_word_suffix = model.opt_string("end_of_word_suffix");
  options.fuse_unk = model.opt_bool("fuse_unk", false);
  options.byte_fallback = model.opt_bool("byte_fallback", false);
  options.ignore_merges = model.opt_bool("ignore_merges", false);
  return std::make_unique<BpeModel>(entries, merges, std::move(options), root.file());
}

/// A special token setting: a string, an {"content": ...} object, or null.
std::optional<std::string> special_token_value(const JsonField& j) {
  if (j.is_null()) return std::nullopt;
  if (j.is_string()) return j.str();
  if (j.is_object()) return j.at("content").str();
  j.fail("a string, an object with \"content\", or null");
}

/// Finishes an Impl whose pipeline is set: the id bound (vocab_size).
void finish(Tokenizer::Impl& impl) {
  impl.vocab_size = std::max(impl.model->id_bound(), impl.added.id_bound());
}

/// Transformers tokenizer classes scalpel can build from vocab.json + merges.txt.
enum class VocabClass { GPT2, Qwen2 };

std::optional<VocabClass> class_from_name(std::string name) {
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Fast") == 0) name.resize(name.size() - 4);
  if (name == "GPT2Tokenizer") return VocabClass::GPT2;
  if (name == "Qwen2Tokenizer") return VocabClass::Qwen2;
  return std::nullopt;
}

std::optional<VocabClass> class_from_model_type(const std::string& model_type) {
  if (model_type == "gpt2") return VocabClass::GPT2;
  if (model_type.rfind("qwen2", 0) == 0 || model_type.rfind("qwen3", 0) == 0) return VocabClass::Qwen2;
  return std::nullopt;
}

/// The tokenizer class named by tokenizer_config.json, else implied by
/// config.json's model_type.
std::optional<std::string> tokenizer_class_name(const SideFiles& side, std::optional<VocabClass>* known) {
  std::optional<std::string> name;
  if (side.tokenizer_config && side.tokenizer_config->is_object()) {
    auto it = side.tokenizer_config->find("tokenizer_class");
    if (it != side.tokenizer_config->end() && it->is_string()) name = it->get<std::string>();
  }
  if (name) {
    *known = class_from_name(*name);
    return name;
  }
  if (side.model_config && side.model_config->is_object()) {
    auto it = side.model_config->find("model_type");
    if (it != side.model_config->end() && it->is_string()) *known = class_from_model_type(it->get<std::string>());
  }
  return std::nullopt;
}

/// Defaults of the transformers tokenizer classes for special tokens that
/// neither tokenizer_config.json nor special_tokens_map.json set.
void class_default_specials(VocabClass cls, std::map<std::string, std::optional<std::string>>& out) {
  const std::string eot = "<|endoftext|>";
  if (cls == VocabClass::GPT2) {
    out["bos_token"] = eot;
    out["eos_token"] = eot;
    out["unk_token"] = eot;
  } else {
    out["eos_token"] = eot;
    out["unk_token"] = eot;
    out["pad_token"] = eot;
  }
}

}  // namespace

std::string component_type(const JsonField& j, const char* what, const std::vector<std::string>& supported) {
  if (!j.is_object()) j.fail(std::string("a ") + what + " object or null");
  const JsonField type = j.at("type");
  const std::string& t = type.str();
  if (std::find(supported.begin(), supported.end(), t) == supported.end()) {
    throw Unsupported(type.where() + ": expected one of " + join(supported) + ", got \"" + t + "\" (scalpel does not implement this " +
                      what + ")");
  }
  return t;
}

std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(const std::string& text, const std::string& file) {
  const Json doc = parse_json_text(text, file);
  const JsonField root(doc, file);
  if (!root.is_object()) root.fail("a JSON object", "is this a tokenizer.json file?");

  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->name = file;
  impl->model = parse_model(root);
  if (root.has("normalizer")) impl->normalizer = parse_normalizer(root.at("normalizer"));
  if (root.has("pre_tokenizer")) impl->pre_tokenizer = parse_pre_tokenizer(root.at("pre_tokenizer"));
  if (root.has("post_processor")) impl->post_processor = parse_post_processor(root.at("post_processor"));
  if (root.has("decoder")) impl->decoder = parse_decoder(root.at("decoder"));

  std::vector<AddedToken> added;
  if (auto list = root.find("added_tokens")) {
    if (!list->is_array()) list->fail("an array of added tokens");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const JsonField entry = list->index(i);
      if (!entry.is_object()) entry.fail("an added-token object");
      added.push_back(parse_added_token(entry, entry.opt_int("id", -1)));
    }
  }
  impl->added.build(added, *impl->model, impl->normalizer.get());
  finish(*impl);
  return impl;
}

void apply_config(Tokenizer::Impl& impl, const SideFiles& side) {
  std::map<std::string, std::optional<std::string>> specials;
  static const char* const kKeys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};

  // Class defaults, then special_tokens_map.json, then tokenizer_config.json.
  std::optional<VocabClass> cls;
  tokenizer_class_name(side, &cls);
  if (cls) class_default_specials(*cls, specials);
  if (side.special_tokens_map) {
    const JsonField root(*side.special_tokens_map, "special_tokens_map.json");
    if (!root.is_object()) root.fail("a JSON object");
    for (const char* key : kKeys) {
      if (root.has(key)) specials[key] = special_token_value(root.at(key));
    }
  }
  std::optional<std::string> template_source;
  std::string template_name = side.tokenizer_config_name + ": chat_template";
  if (side.tokenizer_config) {
    const JsonField root(*side.tokenizer_config, side.tokenizer_config_name);
    if (!root.is_object()) root.fail("a JSON object", "is this a tokenizer_config.json file?");
    for (const char* key : kKeys) {
      if (root.has(key)) specials[key] = special_token_value(root.at(key));
    }
    if (auto t = root.find("chat_template")) {
      if (t->is_string()) {
        template_source = t->str();
      } else if (t->is_array()) {
        // A list of named templates: the one named "default".
        for (std::size_t i = 0; i < t->size(); ++i) {
          const JsonField entry = t->index(i);
          if (entry.at("name").str() == "default") {
            template_source = entry.at("template").str();
            template_name = side.tokenizer_config_name + ": chat_template[default]";
          }
        }
      } else {
        t->fail("a string or a list of {name, template}");
      }
    }
  }
  if (side.chat_template_jinja) {
    template_source = *side.chat_template_jinja;
    template_name = "chat_template.jinja";
  }
  impl.bos = specials["bos_token"];
  impl.eos = specials["eos_token"];
  impl.unk = specials["unk_token"];
  impl.pad = specials["pad_token"];
  impl.chat_template_source = template_source;
  impl.chat_template_name = template_name;
}

namespace {

/// vocab.json + merges.txt, with the pipeline of the transformers class.
std::shared_ptr<Tokenizer::Impl> load_vocab_merges(const fs::path& dir, const SideFiles& side) {
  std::optional<VocabClass> cls;
  const auto name = tokenizer_class_name(side, &cls);
  if (!cls) {
    if (name) {
      throw Unsupported(side.tokenizer_config_name + ": field \"tokenizer_class\": expected one of GPT2Tokenizer, " +
                        "Qwen2Tokenizer (for vocab.json + merges.txt), got \"" + *name +
                        "\" (provide a tokenizer.json instead)");
    }
    cls = VocabClass::GPT2;  // plain byte-level BPE, as GPT-2
  }

  const std::string vocab_text = read_text_file(dir / "vocab.json");
  const Json vocab_doc = parse_json_text(vocab_text, "vocab.json");
  const JsonField vocab(vocab_doc, "vocab.json");
  if (!vocab.is_object()) vocab.fail("a JSON object mapping tokens to ids", "is this a vocab.json file?");
  std::vector<std::pair<std::string, int64_t>> entries;
  entries.reserve(vocab.size());
  for (auto it = vocab_doc.begin(); it != vocab_doc.end(); ++it) {
    entries.emplace_back(it.key(), JsonField(it.value(), "vocab.json", it.key()).integer());
  }

  const std::string merges_text = read_text_file(dir / "merges.txt");
  std::vector<std::pair<std::string, std::string>> merges;
  std::size_t line_no = 0, pos = 0;
  while (pos < merges_text.size()) {
    std::size_t end = merges_text.find('\n', pos);
    if (end == std::string::npos) end = merges_text.size();
    std::string line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw FormatError("merges.txt: line " + std::to_string(line_no) + ": expected \"left right\", got \"" + line +
                        "\" (is this a merges.txt file?)");
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }

  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->name = dir.string();
  BpeOptions options;
  options.continuing_subword_prefix = "";
  options.end_of_word_suffix = "";
  impl->model = std::make_unique<BpeModel>(entries, merges, std::move(options), "merges.txt");

  const Json empty = Json::object();
  const JsonField cfg(side.tokenizer_config ? *side.tokenizer_config : empty, side.tokenizer_config_name);
  if (!cfg.is_object()) cfg.fail("a JSON object", "is this a tokenizer_config.json file?");
  const bool add_prefix_space = cfg.opt_bool("add_prefix_space", false);
  if (*cls == VocabClass::GPT2) {
    impl->pre_tokenizer = make_byte_level_pre_tokenizer(add_prefix_space, true);
  } else {
    impl->normalizer = make_nfc_normalizer();
    std::vector<std::unique_ptr<PreTokenizer>> stages;
    stages.push_back(make_regex_split_pre_tokenizer(kQwen2Pattern, SplitBehavior::Isolated, false));
    stages.push_back(make_byte_level_pre_tokenizer(add_prefix_space, false));
    impl->pre_tokenizer = make_sequence_pre_tokenizer(std::move(stages));
  }
  impl->decoder = make_byte_level_decoder();

  apply_config(*impl, side);

  // Added tokens: tokenizer_config.json's added_tokens_decoder, else the special tokens.
  std::vector<AddedToken> added;
  if (auto decoder = cfg.find("added_tokens_decoder")) {
    if (!decoder->is_object()) decoder->fail("an object mapping ids to added tokens");
    std::vector<std::pair<int64_t, AddedToken>> by_id;
    for (auto it = decoder->json().begin(); it != decoder->json().end(); ++it) {
      const JsonField entry(it.value(), side.tokenizer_config_name, decoder->path() + "." + it.key());
      int64_t id = 0;
      try {
        std::size_t used = 0;
        id = std::stoll(it.key(), &used);
        if (used != it.key().size()) throw std::invalid_argument("id");
      } catch (const std::exception&) {
        throw FormatError(entry.where() + ": expected an integer id as key, got \"" + it.key() + "\"");
      }
      by_id.emplace_back(id, parse_added_token(entry, id));
    }
    std::sort(by_id.begin(), by_id.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [id, t] : by_id) added.push_back(std::move(t));
  } else {
    for (const auto* s : {&impl->bos, &impl->eos, &impl->unk, &impl->pad}) {
      if (*s && std::none_of(added.begin(), added.end(), [&](const AddedToken& t) { return t.content == **s; })) {
        AddedToken t;
        t.content = **s;
        t.special = true;
        added.push_back(t);
      }
    }
  }
  impl->added.build(added, *impl->model, impl->normalizer.get());

  // add_bos_token / add_eos_token.
  std::vector<int64_t> prefix, suffix;
  if (cfg.opt_bool("add_bos_token", false) && impl->bos) {
    if (auto id = impl->token_to_id(*impl->bos)) prefix.push_back(*id);
  }
  if (cfg.opt_bool("add_eos_token", false) && impl->eos) {
    if (auto id = impl->token_to_id(*impl->eos)) suffix.push_back(*id);
  }
  if (!prefix.empty() || !suffix.empty()) impl->post_processor = make_affix_post_processor(prefix, suffix);
  finish(*impl);
  return impl;
}

SideFiles read_side_files(const fs::path& dir) {
  SideFiles side;
  if (auto text = read_optional(dir / "tokenizer_config.json")) {
    side.tokenizer_config = parse_json_text(*text, side.tokenizer_config_name);
  }
  if (auto text = read_optional(dir / "special_tokens_map.json")) {
    side.special_tokens_map = parse_json_text(*text, "special_tokens_map.json");
  }
  side.chat_template_jinja = read_optional(dir / "chat_template.jinja");
  if (auto text = read_optional(dir / "config.json")) {
    // Only model_type is read from the model's config; a config the tokenizer
    // does not understand must not stop it from loading.
    try {
      side.model_config = Json::parse(*text);
    } catch (const Json::parse_error&) {
    }
  }
  return side;
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> load_path(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) {
    throw FileNotFound("tokenizer path \"" + path + "\": expected an existing tokenizer.json file or model directory, " +
                       "got nothing at that path (check the path)");
  }
  if (fs::is_directory(p, ec)) {
    const SideFiles side = read_side_files(p);
    if (fs::is_regular_file(p / "tokenizer.json", ec)) {
      auto impl = load_tokenizer_json(read_text_file(p / "tokenizer.json"), "tokenizer.json");
      impl->name = (p / "tokenizer.json").string();
      apply_config(*impl, side);
      return impl;
    }
    if (fs::is_regular_file(p / "vocab.json", ec) && fs::is_regular_file(p / "merges.txt", ec)) {
      return load_vocab_merges(p, side);
    }
    throw FileNotFound("tokenizer directory \"" + path +
                       "\": expected tokenizer.json, or vocab.json + merges.txt, got neither (a tokenizer.model "
                       "SentencePiece file alone is not supported; convert it to tokenizer.json)");
  }
  const std::string file = p.filename().string();
  auto impl = load_tokenizer_json(read_text_file(p), file);
  impl->name = path;
  apply_config(*impl, read_side_files(p.has_parent_path() ? p.parent_path() : fs::path(".")));
  return impl;
}

}  // namespace scalpel::tok
