// src/io/chat_template.cpp — scalpel::ChatTemplate: parses a Hugging Face
// chat template once and renders conversations with it exactly as
// transformers' render_jinja_template does. The interpreter lives in
// src/io/jinja/; this file converts JSON inputs to template values, prepares
// the context the way transformers does, and maps evaluation errors to
// scalpel's exception types.
#include "scalpel/io/chat_template.hpp"

#include <nlohmann/json.hpp>

#include "io/jinja/interp.hpp"
#include "io/jinja/parser.hpp"
#include "io/jinja/value.hpp"
#include "scalpel/errors.hpp"

namespace scalpel {

using jinja::DictData;
using jinja::Value;

struct ChatTemplate::Impl {
  std::string source;
  std::string name;
  std::unique_ptr<jinja::Template> tpl;
};

namespace {

using Json = nlohmann::ordered_json;

Value from_json(const Json& j, const std::string& what, int depth = 0) {
  if (depth > 200) throw InvalidArgument(what + ": expected JSON nested at most 200 levels deep, got more");
  switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case Json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX))
        throw Unsupported(what + ": expected integers that fit in 64 bits, got " + std::to_string(u) +
                          " (see docs/chat_templates.md)");
      return Value::integer(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float: return Value::real(j.get<double>());
    case Json::value_t::string: return Value::string(j.get<std::string>());
    case Json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x, what, depth + 1));
      return Value::list(std::move(items));
    }
    case Json::value_t::object: {
      DictData d;
      for (auto it = j.begin(); it != j.end(); ++it)
        d.set(Value::string(it.key()), from_json(it.value(), what, depth + 1));
      return Value::dict(std::move(d));
    }
    default: throw InvalidArgument(what + ": expected JSON values, got binary data");
  }
}

Json parse_json(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(what + ": expected valid JSON, got a parse error (" + std::string(e.what()) + ")");
  }
}

// transformers' _alias_reasoning_fields: a message's reasoning, under any of
// reasoning_content / thinking / reasoning, is copied to "thinking" (first
// position unless already present) and "reasoning_content".
Value alias_reasoning(const Value& message) {
  const DictData& d = message.dict();
  static const char* const kFields[] = {"reasoning_content", "thinking", "reasoning"};
  const Value* reasoning = nullptr;
  for (const char* f : kFields) {
    const Value* v = d.find(Value::string(f));
    if (v && !v->is_none()) {
      reasoning = v;
      break;
    }
  }
  if (!reasoning) return message;
  const Value r = *reasoning;
  DictData out;
  out.set(Value::string("thinking"), r);
  for (const auto& e : d.entries()) out.set(e.first, e.second);
  out.set(Value::string("thinking"), r);
  out.set(Value::string("reasoning_content"), r);
  return Value::dict(std::move(out));
}

std::string render_with(const jinja::Template& tpl, const std::string& name, const Value& messages, bool add_generation_prompt,
                        const std::string& extra_context_json) {
  const std::string what = name + ": render";
  DictData context;
  context.set(Value::string("messages"), messages);
  context.set(Value::string("tools"), Value::none());
  context.set(Value::string("documents"), Value::none());
  context.set(Value::string("add_generation_prompt"), Value::boolean(add_generation_prompt));
  const Json extra = parse_json(extra_context_json.empty() ? "{}" : extra_context_json, what + " extra context");
  if (!extra.is_object())
    throw InvalidArgument(what + ": extra context: expected a JSON object, got " + std::string(extra.type_name()));
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (it.key() == "messages" || it.key() == "add_generation_prompt")
      throw InvalidArgument(what + ": extra context: expected keys other than 'messages' and "
                                   "'add_generation_prompt' (they are arguments of render), got '" +
                            it.key() + "'");
    context.set(Value::string(it.key()), from_json(it.value(), what + " extra context"));
  }
  jinja::Interp interp(tpl, context);
  try {
    return interp.render();
  } catch (const jinja::EvalError& e) {
    const std::string where = e.located ? tpl.map->where(e.pos) : name;
    switch (e.kind) {
      case jinja::ErrKind::Raised: throw InvalidArgument(where + ": raise_exception: " + e.message);
      case jinja::ErrKind::Unsupported: throw Unsupported(where + ": " + e.message);
      case jinja::ErrKind::Undefined: throw InvalidArgument(where + ": undefined value: " + e.message);
      case jinja::ErrKind::Security: throw InvalidArgument(where + ": sandbox: " + e.message);
      case jinja::ErrKind::Limit: throw InvalidArgument(where + ": limit: " + e.message);
      default: throw InvalidArgument(where + ": " + e.message);
    }
  }
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, const std::string& name) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->name = name;
  impl->tpl = jinja::parse_template(source, name);
  impl_ = std::move(impl);
}

std::string ChatTemplate::render_json(const std::string& messages_json, bool add_generation_prompt,
                                      const std::string& extra_context_json) const {
  const std::string what = impl_->name + ": render: messages";
  const Json j = parse_json(messages_json, what);
  if (!j.is_array()) throw InvalidArgument(what + ": expected a JSON array of message objects, got " + std::string(j.type_name()));
  std::vector<Value> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_object())
      throw InvalidArgument(what + "[" + std::to_string(i) + "]: expected a JSON object, got " +
                            std::string(j[i].type_name()));
    messages.push_back(alias_reasoning(from_json(j[i], what)));
  }
  return render_with(*impl_->tpl, impl_->name, Value::list(std::move(messages)), add_generation_prompt, extra_context_json);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& extra_context_json) const {
  std::vector<Value> list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    DictData d;
    d.set(Value::string("role"), Value::string(m.role));
    d.set(Value::string("content"), Value::string(m.content));
    list.push_back(Value::dict(std::move(d)));
  }
  return render_with(*impl_->tpl, impl_->name, Value::list(std::move(list)), add_generation_prompt, extra_context_json);
}

const std::string& ChatTemplate::source() const { return impl_->source; }

}  // namespace scalpel
