// tests/support/render_template.cpp — standalone driver for scalpel's chat
// template renderer, used to compare it with transformers before (and
// besides) the Python bindings.
//
//   render_template TEMPLATE_FILE MESSAGES_JSON_FILE CONTEXT_JSON_FILE ADD_GENERATION_PROMPT(0|1)
//       prints the rendering; on error prints "<ErrorType>: message" to
//       stderr and exits with 2.
//   render_template --batch CASES_JSONL
//       each input line {"template", "messages", "context", "add_generation_prompt"}
//       gives one output line {"ok": true, "out": ...} or
//       {"ok": false, "error": "<ErrorType>", "message": ...}.
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "scalpel/errors.hpp"
#include "scalpel/io/chat_template.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs fn and reports the exception type the way the Python binding maps it.
template <typename F>
nlohmann::ordered_json guarded(F fn) {
  nlohmann::ordered_json r;
  try {
    r["out"] = fn();
    r["ok"] = true;
    return r;
  } catch (const scalpel::Unsupported& e) {
    r["error"] = "Unsupported";
    r["message"] = e.what();
  } catch (const scalpel::InvalidArgument& e) {
    r["error"] = "InvalidArgument";
    r["message"] = e.what();
  } catch (const scalpel::FormatError& e) {
    r["error"] = "FormatError";
    r["message"] = e.what();
  } catch (const std::exception& e) {
    r["error"] = "std::exception";
    r["message"] = e.what();
  }
  r["ok"] = false;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--batch") {
    std::ifstream in(argv[2], std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto c = nlohmann::ordered_json::parse(line);
      const auto r = guarded([&] {
        scalpel::ChatTemplate t(c.at("template").get<std::string>(), c.value("name", std::string("chat_template")));
        return t.render_json(c.at("messages").dump(), c.value("add_generation_prompt", false),
                             c.contains("context") ? c.at("context").dump() : "{}");
      });
      std::cout << r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    return 0;
  }
  if (argc != 5) {
    std::cerr << "usage: render_template TEMPLATE MESSAGES_JSON CONTEXT_JSON ADD_GENERATION_PROMPT\n"
                 "       render_template --batch CASES_JSONL\n";
    return 1;
  }
  const auto r = guarded([&] {
    scalpel::ChatTemplate t(read_file(argv[1]), argv[1]);
    return t.render_json(read_file(argv[2]), std::string(argv[4]) == "1", read_file(argv[3]));
  });
  if (r.at("ok").get<bool>()) {
    std::cout << r.at("out").get<std::string>();
    return 0;
  }
  std::cerr << r.at("error").get<std::string>() << ": " << r.at("message").get<std::string>() << "\n";
  return 2;
}
