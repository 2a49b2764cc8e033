// scalpel/io/chat_template.hpp — chat templates: a documented subset of Jinja2
// that renders Hugging Face `chat_template`s exactly as transformers does
// (trim_blocks, lstrip_blocks, raise_exception, strftime_now, tojson, ...).
// The supported subset is listed in docs/chat_templates.md. Anything outside it
// is reported at parse time (scalpel::Unsupported / scalpel::FormatError with
// line and column), never rendered silently wrong.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace scalpel {

/// One chat turn. Templates that need more (tool calls, lists of content
/// parts) take the messages as JSON through ChatTemplate::render_json.
struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  /// Parses `source` (Jinja). `name` appears in error messages (e.g. the file
  /// it came from). Throws FormatError on a syntax error, Unsupported on a
  /// construct outside the documented subset.
  explicit ChatTemplate(const std::string& source, const std::string& name = "chat_template");

  /// Renders with `messages` (a JSON array of message objects) and
  /// `add_generation_prompt`; `extra_context_json` is a JSON object whose keys
  /// become template variables (bos_token, eos_token, tools, documents,
  /// date_string, enable_thinking, ...). A `raise_exception(...)` in the
  /// template throws InvalidArgument carrying the template's message.
  std::string render_json(const std::string& messages_json, bool add_generation_prompt,
                          const std::string& extra_context_json = "{}") const;

  /// Same, for plain role/content messages.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& extra_context_json = "{}") const;

  const std::string& source() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace scalpel
