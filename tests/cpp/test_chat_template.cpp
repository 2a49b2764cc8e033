// Chat templates: the Jinja2 subset renders byte-for-byte as transformers'
// jinja2 environment does (expected strings below were produced by
// transformers 5.x / jinja2 3.1), and everything else is a typed error with a
// position: FormatError for syntax, Unsupported for constructs outside the
// subset, InvalidArgument for run-time failures and raise_exception().
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scalpel/errors.hpp"
#include "scalpel/io/chat_template.hpp"

using scalpel::ChatMessage;
using scalpel::ChatTemplate;

namespace {

const char* const kUserHi = R"([{"role": "user", "content": "Hi"}])";

// Renders `source` with one user message "Hi" and `context` (JSON object).
std::string render(const std::string& source, const std::string& context = "{}", bool add_generation_prompt = false,
                   const std::string& messages = kUserHi) {
  return ChatTemplate(source).render_json(messages, add_generation_prompt, context);
}

// Expects `fn` to throw E with a message containing every fragment.
template <typename E, typename F>
void expect_error(F fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    FAIL() << "expected an exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg << "\nmissing: " << f;
  }
}

template <typename E>
void expect_parse_error(const std::string& source, std::initializer_list<std::string> fragments) {
  expect_error<E>([&] { ChatTemplate t(source); }, fragments);
}

template <typename E>
void expect_render_error(const std::string& source, std::initializer_list<std::string> fragments,
                         const std::string& context = "{}") {
  ChatTemplate t(source);
  expect_error<E>([&] { t.render_json(kUserHi, false, context); }, fragments);
}

}  // namespace

// ---------------------------------------------------------------------------
// Whitespace: trim_blocks, lstrip_blocks, {%- -%}, {%+ +%}, comments, raw

TEST(ChatTemplate, TrimBlocksAndLstripBlocks) {
  EXPECT_EQ(render("a\n  {% if true %}\n    b\n  {% endif %}\nc"), "a\n    b\nc");
  EXPECT_EQ(render("{% for i in range(3) %}\n  {{ i }}\n{% endfor %}"), "  0\n  1\n  2\n");
  // Variables are not lstripped, and no newline is trimmed after them.
  EXPECT_EQ(render("  {{ 'x' }}\n  {% set y = 1 %}  after"), "  x\n  after");
}

TEST(ChatTemplate, WhitespaceControlMarkers) {
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("x {{- ' y ' -}} z"), "x y z");
  EXPECT_EQ(render("a\n  {%+ if true %}b{% endif +%}\nc"), "a\n  b\nc");
  // "-" strips Unicode whitespace too, like Python's str.rstrip().
  EXPECT_EQ(render("a\u3000\n {%- if true %}b{% endif %}"), "ab");
}

TEST(ChatTemplate, CommentsRawAndNewlines) {
  EXPECT_EQ(render("line\n{# comment #}\nnext {#- trimmed -#}   end"), "line\nnextend");
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  // \r\n becomes \n and one trailing newline is dropped (keep_trailing_newline=False).
  EXPECT_EQ(render("a\r\nb\r\n"), "a\nb");
  EXPECT_EQ(render("a\n\n"), "a\n");
}

// ---------------------------------------------------------------------------
// Literals, operators, Python formatting of values

TEST(ChatTemplate, LiteralsAndPythonStr) {
  EXPECT_EQ(render("{{ 'a\\nb\\t\\'' }}|{{ \"\\u00e9\\x41\" }}|{{ 'x' 'y' }}"), "a\nb\t'|\xC3\xA9" "A|xy");
  EXPECT_EQ(render("{{ 1_000 }} {{ 0x1f }} {{ 1.5e3 }} {{ 2.50 }} {{ 1e-7 }} {{ 1e16 }} {{ 0.1 + 0.2 }}"),
            "1000 31 1500.0 2.5 1e-07 1e+16 0.30000000000000004");
  EXPECT_EQ(render("{{ true }} {{ none }} {{ [1, 'a', none, 1.0] }} {{ {'k': 'v'} }} {{ (1,) }}"),
            "True None [1, 'a', None, 1.0] {'k': 'v'} (1,)");
  EXPECT_EQ(render("{{ \"it's\" }}|{{ [\"it's\"] }}"), "it's|[\"it's\"]");
}

TEST(ChatTemplate, Arithmetic) {
  EXPECT_EQ(render("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ -2 ** 2 }}"),
            "3.5 3 -4 2 1024 0.5 4");
  EXPECT_EQ(render("{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none }} {{ (1 + 2) ~ 3 }}"), "abab [1, 2] a1None 33");
  // '~' binds tighter than '+' (jinja2's grammar): (1 ~ 2) + 3 adds a str and an int.
  expect_render_error<scalpel::InvalidArgument>("{{ 1 ~ 2 + 3 }}", {"can only concatenate str"});
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'b' in 'abc' }} {{ 3 not in [1] }} {{ 0 or 'x' }}"),
            "True True True True x");
  EXPECT_EQ(render("{{ 'y' if 0 else 'n' }}[{{ 'only' if false }}]"), "n[]");
}

TEST(ChatTemplate, TypeErrorsRaise) {
  expect_render_error<scalpel::InvalidArgument>("{{ 'a' + 1 }}",
                                                {"chat_template:1:8", "can only concatenate str (not \"int\") to str"});
  expect_render_error<scalpel::InvalidArgument>("{{ 1 // 0 }}", {"chat_template:1:6", "division or modulo by zero"});
  expect_render_error<scalpel::InvalidArgument>("{{ 'x' in none }}", {"'NoneType' is not iterable"});
}

// ---------------------------------------------------------------------------
// Variables, subscripts, slices, undefined

TEST(ChatTemplate, AttributesSubscriptsAndSlices) {
  const std::string ctx = R"({"d": {"a": 1, "b": {"c": "deep"}}, "l": [1, 2, 3], "s": "h\u00e9llo"})";
  EXPECT_EQ(render("{{ d.a }}{{ d['a'] }}{{ d.b.c }}{{ l[0] }}{{ l[-1] }}{{ l.1 }}", ctx), "11deep132");
  EXPECT_EQ(render("{{ l[1:] }} {{ l[::-1] }} {{ l[::2] }} {{ s[1:3] }} {{ s[::-1] }} {{ s|length }}", ctx),
            "[2, 3] [3, 2, 1] [1, 3] \xC3\xA9l oll\xC3\xA9h 5");
  // Missing keys and out-of-range indexes are undefined, which prints as "".
  EXPECT_EQ(render("[{{ d.zz }}][{{ l[10] }}][{{ messages[0].content }}]", ctx), "[][][Hi]");
  // dict.items is the method, not the key.
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ctx), "a=1;b={'c': 'deep'};");
}

TEST(ChatTemplate, UndefinedSemantics) {
  EXPECT_EQ(render("[{{ missing }}][{{ missing is defined }}][{{ missing|length }}][{{ missing|default('d') }}]"),
            "[][False][0][d]");
  EXPECT_EQ(render("{% for x in missing %}{{ x }}{% else %}empty{% endfor %}{% if not missing %}!{% endif %}"),
            "empty!");
  expect_render_error<scalpel::InvalidArgument>("{{ missing.attr }}", {"chat_template:1:11", "'missing' is undefined"});
  expect_render_error<scalpel::InvalidArgument>("{{ missing + 1 }}", {"'missing' is undefined"});
  expect_render_error<scalpel::InvalidArgument>("{{ messages[3].role }}", {"list object has no element 3"});
}

// ---------------------------------------------------------------------------
// Statements

TEST(ChatTemplate, LoopVariable) {
  EXPECT_EQ(render("{% for x in [10, 20, 30] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(render("{% for x in 'abc' %}[{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.cycle('o', 'e') }}]{% endfor %}"),
            "[|b|o][a|c|e][b||o]");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}"),
            "2:1/2 4:2/2 ");
}

TEST(ChatTemplate, BreakContinueAndElse) {
  EXPECT_EQ(render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}"
                   "{% endif %}{{ x }}{% endfor %}"),
            "0134");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}none{% endfor %}"), "none");
  // jinja2 runs the else block when no iteration reached the end of the body.
  EXPECT_EQ(render("{% for x in [1] %}{% break %}{% else %}else{% endfor %}"), "else");
}

TEST(ChatTemplate, Scoping) {
  // A set inside a loop is local to the iteration; inside an if it is not.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"), "12121");
  EXPECT_EQ(render("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"), "2");
}

TEST(ChatTemplate, NamespaceSet) {
  EXPECT_EQ(render("{% set ns = namespace(total=0, seen=[]) %}{% for i in [1, 2, 3] %}"
                   "{% set ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}"
                   "{{ ns.total }} {{ ns.seen }} {{ ns }}"),
            "6 [1, 2, 3] <Namespace {'total': 6, 'seen': [1, 2, 3]}>");
  expect_render_error<scalpel::InvalidArgument>("{% set s = 'x' %}{% set s.a = 1 %}",
                                                {"set s.a: expected a namespace() object, got str"});
  expect_render_error<scalpel::InvalidArgument>("{% set ns = namespace() %}{% set ns._a = 1 %}",
                                                {"sandbox", "'_a'"});
}

TEST(ChatTemplate, BlockSetMacrosCallAndFilterBlocks) {
  EXPECT_EQ(render("{% set b %}\n  captured {{ 1 + 1 }}\n{% endset %}[{{ b }}]{% set u | upper %}x{% endset %}{{ u }}"),
            "[  captured 2\n]X");
  EXPECT_EQ(render("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
                   "{{ greet('Ann') }} {{ greet(greeting='Hi', name='Bo') }} [{{ greet() }}]"),
            "Hello, Ann! Hi, Bo! [Hello, !]");
  EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% call wrap('b') %}in{% endcall %}"),
            "<b>in</b>");
  EXPECT_EQ(render("{% filter upper %}shout {{ 'this' }}{% endfilter %}"), "SHOUT THIS");
  EXPECT_EQ(render("{% with a = 1 %}{{ a }}{% endwith %}[{{ a }}]"), "1[]");
  EXPECT_EQ(render("{% generation %}tracked{% endgeneration %}"), "tracked");
}

// ---------------------------------------------------------------------------
// Filters, tests, methods

TEST(ChatTemplate, StringFiltersAndMethods) {
  EXPECT_EQ(render("{{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'hello wORLD'|title }}|{{ 'hELLO'|capitalize }}"
                   "|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ 'a b a'|replace('a', 'x') }}"),
            "x|a|Hello World|Hello|ABab|x b x");
  EXPECT_EQ(render("{{ ' x '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(none, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}"
                   "|{{ 'hello'.startswith('he') }}|{{ 'hi'.endswith(('x', 'i')) }}|{{ '-'.join(['a', 'b']) }}"),
            "x|['a', 'b', '', 'c']|['a', 'b c']|['a,b', 'c']|True|True|a-b");
  EXPECT_EQ(render("{{ '<think>r</think>\\n\\nA'.split('</think>')[-1].lstrip('\\n') }}"), "A");
  EXPECT_EQ(render("{{ '{} and {x}'.format(1, x=2) }}|{{ '%s-%03d' % ('a', 7) }}"), "1 and 2|a-007");
}

TEST(ChatTemplate, SequenceFilters) {
  const std::string ctx = R"({"users": [{"name": "ann", "age": 31, "admin": true},
                                        {"name": "Bob", "age": 19, "admin": false}]})";
  EXPECT_EQ(render("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['b', 'A', 'c']|sort }}|{{ [1, 2, 1]|unique|list }}"),
            "[1, 2, 3]|[3, 2, 1]|['A', 'b', 'c']|[1, 2]");
  EXPECT_EQ(render("{{ users|map(attribute='name')|join(', ') }}|{{ users|selectattr('admin')|map(attribute='name')|list }}"
                   "|{{ users|rejectattr('age', 'gt', 20)|list|length }}|{{ (users|sort(attribute='age')|first).name }}",
                   ctx),
            "ann, Bob|['ann']|1|Bob");
  EXPECT_EQ(render("{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}{{ 'abc'|list }}{{ [1, 2, 3]|reverse|list }}{{ [1, 2]|sum }}"),
            "13['a', 'b', 'c'][3, 2, 1]3");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|dictsort }}|{{ [1, 2, 3, 4, 5]|batch(2)|list }}|{{ 'a\\nb'|indent(2, true) }}"),
            "[('a', 2), ('b', 1)]|[[1, 2], [3, 4], [5]]|  a\n  b");
  EXPECT_EQ(render("{{ '42'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }} {{ 2.675|round(2) }} {{ 2.5|round }} {{ -3|abs }}"),
            "43 0 2.5 2.67 2.0 3");
  EXPECT_EQ(render("{{ none|default('d') }}|{{ ''|default('d', true) }}|{{ 5|string ~ 'x' }}"), "None|d|5x");
}

TEST(ChatTemplate, ToJson) {
  const std::string ctx = R"({"d": {"name": "f", "args": {"x": [1, 2.5, null, true]}, "u": "\u00e9\n\"q\""}})";
  EXPECT_EQ(render("{{ d|tojson }}", ctx),
            "{\"name\": \"f\", \"args\": {\"x\": [1, 2.5, null, true]}, \"u\": \"\xC3\xA9\\n\\\"q\\\"\"}");
  EXPECT_EQ(render("{{ d.args|tojson(indent=2) }}", ctx), "{\n  \"x\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"), "{\"a\":2,\"b\":1}");
  EXPECT_EQ(render("{{ '\u00e9'|tojson(ensure_ascii=true) }}"), "\"\\u00e9\"");
  expect_render_error<scalpel::InvalidArgument>("{{ missing|tojson }}", {"not JSON serializable"});
}

TEST(ChatTemplate, Tests) {
  EXPECT_EQ(render("{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is string }}{{ 1 is number }}"
                   "{{ true is number }}{{ true is integer }}{{ 1.0 is float }}{{ none is none }}"),
            "TrueTrueTrueTrueTrueTrueFalseTrueTrue");
  EXPECT_EQ(render("{{ {} is mapping }}{{ [] is sequence }}{{ 'x' is iterable }}{{ 1 is iterable }}{{ x is not defined }}"
                   "{{ 'ab' is lower }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 'x' is in 'xyz' }}{{ false is sameas false }}"),
            "TrueTrueTrueFalseTrueTrueTrueTrueTrueTrue");
}

TEST(ChatTemplate, Globals) {
  EXPECT_EQ(render("{{ range(3)|list }} {{ range(2, 10, 3)|list }} {{ dict(a=1) }} {{ dict.fromkeys(['x'], 0) }}"),
            "[0, 1, 2] [2, 5, 8] {'a': 1} {'x': 0}");
  EXPECT_EQ(render("{{ strftime_now('%Y')|length }}"), "4");
}

// ---------------------------------------------------------------------------
// raise_exception and run-time errors

TEST(ChatTemplate, RaiseException) {
  const std::string src =
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
      "{% endif %}{{ m.content }}{% endfor %}";
  ChatTemplate t(src);
  EXPECT_EQ(t.render_json(R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])", false), "ab");
  try {
    t.render_json(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])", false);
    FAIL() << "expected InvalidArgument";
  } catch (const scalpel::InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()),
              "chat_template:1:95: raise_exception: Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplate, SafetyLimits) {
  expect_render_error<scalpel::InvalidArgument>("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                                                {"limit", "recursion bound"});
  expect_render_error<scalpel::InvalidArgument>("{{ range(1000000)|length }}", {"MAX_RANGE"});
  expect_render_error<scalpel::InvalidArgument>("{% for a in range(100000) %}{{ range(100000)|sum }}{% endfor %}",
                                                {"limit", "iterations"});
  expect_render_error<scalpel::InvalidArgument>("{{ 'x' * 10 ** 12 }}", {"limit"});
  expect_render_error<scalpel::InvalidArgument>("{{ 9223372036854775807 + 1 }}", {"integer overflow"});
  expect_parse_error<scalpel::FormatError>("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}",
                                           {"nesting"});
}

// ---------------------------------------------------------------------------
// Parse errors (with line:column) and unsupported constructs

TEST(ChatTemplate, SyntaxErrorsHaveLineAndColumn) {
  expect_parse_error<scalpel::FormatError>(
      "{{ 1 + }}", {"chat_template:1:8: expected an expression, got end of print statement ('}}')"});
  expect_parse_error<scalpel::FormatError>(
      "Hello\n{% if x %}\nabc",
      {"chat_template:3:4: expected 'elif' or 'else' or 'endif' to close the 'if' opened at chat_template:2:4, "
       "got end of template"});
  expect_parse_error<scalpel::FormatError>(
      "{% for x in y %}{% endif %}",
      {"chat_template:1:20: expected 'endfor' or 'else' to close the 'for' opened at chat_template:1:4, got 'endif'"});
  expect_parse_error<scalpel::FormatError>("{{ (1 }}", {"chat_template:1:7: expected ')', got '}'"});
  expect_parse_error<scalpel::FormatError>("{{ 'abc }}", {"chat_template:1:4: expected a closing ' for this string"});
  expect_parse_error<scalpel::FormatError>("{# open", {"chat_template:1:1: expected '#}' to close this comment"});
  expect_parse_error<scalpel::FormatError>("{% foo %}", {"chat_template:1:4:", "got unknown tag 'foo'"});
  expect_parse_error<scalpel::FormatError>("{{ x|nosuch }}", {"chat_template:1:6: expected a known filter, got unknown filter 'nosuch'"});
  expect_parse_error<scalpel::FormatError>("{% break %}", {"'break': expected to be inside a for loop"});
  expect_parse_error<scalpel::FormatError>("line1\n  {{ 1 +\n  }}", {"chat_template:3:3:"});
  expect_parse_error<scalpel::FormatError>(std::string("{{ '\xff' }}"), {"expected UTF-8 text"});
  // The name passed to the constructor is used in messages.
  expect_error<scalpel::FormatError>([] { ChatTemplate t("{{", "tokenizer_config.json"); },
                                     {"tokenizer_config.json:1:1: expected '}}' to close this tag"});
}

TEST(ChatTemplate, UnsupportedConstructs) {
  for (const char* src : {"{% extends 'base' %}", "{% include 'x' %}", "{% import 'm' as m %}",
                          "{% for x in y recursive %}{% endfor %}", "{{ x|urlize }}", "{{ x|groupby('a') }}"}) {
    expect_parse_error<scalpel::Unsupported>(src, {"docs/chat_templates.md"});
  }
  // Outputs whose Python rendering contains a memory address are refused.
  expect_render_error<scalpel::Unsupported>("{{ [1]|select }}", {"generator", "docs/chat_templates.md"});
  expect_render_error<scalpel::Unsupported>("{{ 'x'.encode() }}", {"str.encode()", "docs/chat_templates.md"});
  // Sandbox: lists and dicts cannot be modified.
  expect_render_error<scalpel::InvalidArgument>("{% set l = [] %}{{ l.append(1) }}", {"sandbox", "unsafe"});
}

// ---------------------------------------------------------------------------
// API

TEST(ChatTemplate, ContextAndMessages) {
  const ChatTemplate t(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}[{{ tools }}]");
  EXPECT_EQ(t.render({{"user", "Hi"}, {"assistant", "Hello"}}, true, R"({"bos_token": "<s>"})"),
            "<s><user>Hi<assistant>Hello<assistant>[None]");
  EXPECT_EQ(t.render_json(R"([{"role": "user", "content": "x"}])", false, R"({"tools": [{"name": "f"}]})"),
            "<user>x[[{'name': 'f'}]]");
  EXPECT_EQ(t.source().substr(0, 15), "{{ bos_token }}");
  expect_error<scalpel::InvalidArgument>([&] { t.render_json("{}", false); }, {"expected a JSON array"});
  expect_error<scalpel::InvalidArgument>([&] { t.render_json("[1]", false); }, {"[0]: expected a JSON object"});
  expect_error<scalpel::InvalidArgument>([&] { t.render_json("[", false); }, {"expected valid JSON"});
  expect_error<scalpel::InvalidArgument>([&] { t.render_json("[]", false, "[]"); }, {"expected a JSON object"});
  expect_error<scalpel::InvalidArgument>([&] { t.render_json("[]", false, R"({"messages": []})"); },
                                         {"'messages'"});
}

TEST(ChatTemplate, ReasoningFieldsAreAliasedLikeTransformers) {
  // transformers copies reasoning_content / thinking / reasoning into both
  // "thinking" and "reasoning_content" before rendering.
  const ChatTemplate t("{% for m in messages %}{{ m|tojson }}{% endfor %}");
  EXPECT_EQ(t.render_json(R"([{"role": "assistant", "content": "4", "reasoning": "sum"}])", false),
            R"({"thinking": "sum", "role": "assistant", "content": "4", "reasoning": "sum", "reasoning_content": "sum"})");
}

TEST(ChatTemplate, ChatMlTemplate) {
  const ChatTemplate t(
      "{%- for message in messages %}\n"
      "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
      "{%- endfor %}\n"
      "{%- if add_generation_prompt %}\n"
      "    {{- '<|im_start|>assistant\\n' }}\n"
      "{%- endif %}\n");
  EXPECT_EQ(t.render({{"system", "Be brief."}, {"user", "Hi {{ there }}"}}, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi {{ there }}<|im_end|>\n<|im_start|>assistant\n");
}
