// src/io/jinja/globals.cpp — the global functions a chat template can call:
// jinja2's range, dict, namespace, cycler, joiner (lipsum is refused: it is
// random) and transformers' raise_exception and strftime_now.
#include <chrono>
#include <cstdio>
#include <ctime>

#include "io/jinja/interp.hpp"

namespace scalpel::jinja {
namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2's sandbox MAX_RANGE

Value fn(const std::string& name, Function::Fn f) { return Value::object(std::make_shared<Function>(name, std::move(f))); }

// dict(*args, **kwargs) semantics: a mapping or an iterable of pairs, then keywords.
void fill_dict(DictData& d, const CallArgs& args, const std::string& what) {
  if (args.pos.size() > 1)
    fail(ErrKind::Type, what + " expected at most 1 positional argument, got " + std::to_string(args.pos.size()));
  if (!args.pos.empty()) {
    const Value& src = args.pos[0];
    if (src.is_dict()) {
      for (const auto& e : src.dict().entries()) d.set(e.first, e.second);
    } else {
      size_t i = 0;
      for (const Value& item : iterate(src)) {
        std::vector<Value> kv = iterate(item);
        if (kv.size() != 2)
          fail(ErrKind::Value, "dictionary update sequence element #" + std::to_string(i) + " has length " +
                                   std::to_string(kv.size()) + "; 2 is required");
        d.set(kv[0], kv[1]);
        ++i;
      }
    }
  }
  for (const auto& kw : args.kw) d.set(Value::string(kw.first), kw.second);
}

// transformers' TemplateDict: callable like dict, plus dict.fromkeys.
class DictGlobal : public Object {
 public:
  std::string type_name() const override { return "TemplateDict"; }
  bool callable() const override { return true; }
  Value call(Interp&, CallArgs& args) const override {
    DictData d;
    fill_dict(d, args, "dict");
    return Value::dict(std::move(d));
  }
  Value getattr(const std::string& name) const override {
    if (name == "fromkeys") {
      return fn("fromkeys", [](Interp&, CallArgs& args) {
        Args a("fromkeys", args, {"iterable", "value"}, 1);
        DictData d;
        const Value v = a.get(1, Value::none());
        for (const Value& k : iterate(a[0])) d.set(k, v);
        return Value::dict(std::move(d));
      });
    }
    return Object::getattr(name);
  }
};

// jinja2.utils.Cycler. The state is shared with the bound methods, which
// may outlive the expression that produced the cycler.
class Cycler : public Object {
 public:
  struct State {
    std::vector<Value> items;
    size_t pos = 0;
  };
  explicit Cycler(std::vector<Value> items) : st_(std::make_shared<State>()) { st_->items = std::move(items); }
  std::string type_name() const override { return "Cycler"; }
  Value getattr(const std::string& name) const override {
    auto st = st_;
    if (name == "current") return st->items[st->pos];
    if (name == "next" || name == "__next__")
      return fn("next", [st](Interp&, CallArgs&) {
        Value v = st->items[st->pos];
        st->pos = (st->pos + 1) % st->items.size();
        return v;
      });
    if (name == "reset")
      return fn("reset", [st](Interp&, CallArgs&) {
        st->pos = 0;
        return Value::none();
      });
    if (name == "items") return Value::list(st->items);
    return Object::getattr(name);
  }

 private:
  std::shared_ptr<State> st_;
};

// jinja2.utils.Joiner: returns "" the first time, then the separator.
class Joiner : public Object {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  std::string type_name() const override { return "Joiner"; }
  bool callable() const override { return true; }
  Value call(Interp&, CallArgs& args) const override {
    Args a("joiner", args, {}, 0);
    if (!used_) {
      used_ = true;
      return Value::string("");
    }
    return Value::string(sep_);
  }

 private:
  std::string sep_;
  mutable bool used_ = false;
};

// datetime.now().strftime(fmt): %f, %z, %Z handled as Python does for a naive
// datetime, the rest by the C library (as CPython does).
std::string strftime_now(const std::string& fmt) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  localtime_r(&t, &tm);
  std::string expanded;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 1 < fmt.size()) {
      const char c = fmt[i + 1];
      if (c == 'f') {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(micros));
        expanded += buf;
        ++i;
        continue;
      }
      if (c == 'z' || c == 'Z') {
        ++i;
        continue;
      }
      if (c == ':' && i + 2 < fmt.size() && fmt[i + 2] == 'z') {
        i += 2;
        continue;
      }
      expanded += fmt.substr(i, 2);
      ++i;
      continue;
    }
    expanded.push_back(fmt[i]);
  }
  if (expanded.empty()) return "";
  std::vector<char> buf(expanded.size() * 4 + 256);
  while (true) {
    const size_t n = std::strftime(buf.data(), buf.size(), expanded.c_str(), &tm);
    if (n > 0) return std::string(buf.data(), n);
    if (buf.size() > (1u << 20)) return "";  // the format legitimately renders as ""
    buf.resize(buf.size() * 4);
  }
}

}  // namespace

void install_globals(std::unordered_map<std::string, Value>& g) {
  g["range"] = fn("range", [](Interp&, CallArgs& args) {
    if (!args.kw.empty()) fail(ErrKind::Type, "range() takes no keyword arguments");
    if (args.pos.empty() || args.pos.size() > 3)
      fail(ErrKind::Type, "range expected 1 to 3 arguments, got " + std::to_string(args.pos.size()));
    int64_t start = 0, stop, step = 1;
    if (args.pos.size() == 1) {
      stop = expect_int(args.pos[0], "range");
    } else {
      start = expect_int(args.pos[0], "range");
      stop = expect_int(args.pos[1], "range");
      if (args.pos.size() == 3) step = expect_int(args.pos[2], "range");
    }
    if (step == 0) fail(ErrKind::Value, "range() arg 3 must not be zero");
    // Length without overflow, then jinja2's sandbox bound.
    const __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
    const __int128 st = step > 0 ? step : -static_cast<__int128>(step);
    const __int128 len = span <= 0 ? 0 : (span + st - 1) / st;
    if (len > kMaxRange)
      fail(ErrKind::Limit, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    return Value::range(start, stop, step);
  });
  g["dict"] = Value::object(std::make_shared<DictGlobal>());
  g["namespace"] = fn("namespace", [](Interp& interp, CallArgs& args) {
    DictData d;
    fill_dict(d, args, "namespace");
    auto ns = std::make_shared<Namespace>();
    interp.track(ns);
    for (const auto& e : d.entries()) {
      if (!e.first.is_string()) fail(ErrKind::Type, "namespace: attribute names must be strings");
      ns->set(e.first.str(), e.second);
    }
    return Value::object(ns);
  });
  g["cycler"] = fn("cycler", [](Interp&, CallArgs& args) {
    if (!args.kw.empty()) fail(ErrKind::Type, "cycler() takes no keyword arguments");
    if (args.pos.empty()) fail(ErrKind::Value, "at least one item has to be provided");
    return Value::object(std::make_shared<Cycler>(args.pos));
  });
  g["joiner"] = fn("joiner", [](Interp&, CallArgs& args) {
    Args a("joiner", args, {"sep"}, 0);
    return Value::object(std::make_shared<Joiner>(a.has(0) ? to_str(a[0]) : ", "));
  });
  g["lipsum"] = fn("lipsum", [](Interp&, CallArgs&) -> Value { unsupported("lipsum() (random text)"); });
  g["raise_exception"] = fn("raise_exception", [](Interp&, CallArgs& args) -> Value {
    Args a("raise_exception", args, {"message"}, 1);
    fail(ErrKind::Raised, to_str(a[0]));
  });
  g["strftime_now"] = fn("strftime_now", [](Interp&, CallArgs& args) {
    Args a("strftime_now", args, {"format"}, 1);
    return Value::string(strftime_now(expect_str(a[0], "strftime_now format")));
  });
}

}  // namespace scalpel::jinja
