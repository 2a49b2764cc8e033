"""Parity of scalpel's chat-template renderer with transformers.

For every tokenizer_config.json with a chat_template under the shared data
folder (env SCALPEL_SHARED, else <repo>/../shared), a battery of
conversations is rendered by transformers' own renderer
(transformers.utils.chat_template_utils.render_jinja_template, with the
special tokens transformers would pass) and by scalpel; the strings must be
identical, and where transformers raises, scalpel must raise too.

A second part renders synthetic templates that exercise each supported
filter, test, operator and statement, against the same transformers
environment (a differential test of the Jinja subset itself).

scalpel is used through its Python binding (scalpel.ChatTemplate).
Run as a script to print a pass/fail summary instead of pytest's report.
"""
import copy
import json
import os
import sys
from pathlib import Path

import jinja2  # noqa: F401  (the oracle's template engine: a missing package fails here)
import pytest
import transformers.utils.chat_template_utils as transformers_ct

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SCALPEL_SHARED", REPO.parent / "shared"))

# ----------------------------------------------------------------------------
# scalpel backends


class ScalpelError(Exception):
    pass


def render_scalpel_many(cases):
    """cases: list of (template, messages, context, add_generation_prompt).
    Returns a list of ("ok", text) or ("error", "ExceptionType: message")."""
    import scalpel

    out = []
    for template, messages, context, agp in cases:
        try:
            tpl = scalpel.ChatTemplate(template)
            out.append(("ok", tpl.render(messages, add_generation_prompt=agp, **context)))
        except (ValueError, RuntimeError) as e:
            out.append(("error", f"{type(e).__name__}: {e}"))
    return out


# ----------------------------------------------------------------------------
# transformers reference


def render_transformers(template, messages, context, agp):
    ctx = dict(context)
    tools = ctx.pop("tools", None)
    documents = ctx.pop("documents", None)
    try:
        rendered, _ = transformers_ct.render_jinja_template(
            conversations=[copy.deepcopy(messages)], tools=tools, documents=documents,
            chat_template=template, add_generation_prompt=agp, **ctx)
        return ("ok", rendered[0])
    except Exception as e:  # any exception: scalpel must raise as well
        return ("error", f"{type(e).__name__}: {e}")


# ----------------------------------------------------------------------------
# Real templates


SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def special_tokens(config):
    """The template variables transformers' special_tokens_map provides."""
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = str(v)
    return out


def discover_templates():
    found = []
    for root in (SHARED / "tokenizers", SHARED / "models"):
        for path in sorted(root.glob("*/tokenizer_config.json")):
            config = json.loads(path.read_text(encoding="utf-8"))
            tpl = config.get("chat_template")
            if not tpl:
                continue
            name = path.parent.name
            if isinstance(tpl, list):  # named templates
                for entry in tpl:
                    found.append((f"{name}:{entry['name']}", entry["template"], config))
            else:
                found.append((name, tpl, config))
    return found


def U(content):
    return {"role": "user", "content": content}


def A(content, **extra):
    return {"role": "assistant", "content": content, **extra}


def S(content):
    return {"role": "system", "content": content}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather — in °C.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7.5}},
            "required": ["city"],
        },
    },
}
TOOL_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}
TOOL_CALL_STR_ARGS = {"type": "function", "function": {"name": "get_weather",
                                                        "arguments": "{\"city\": \"Paris\"}"}}

TRICKY = "  Héllo, 世界! 🎉 {{ not jinja }} {% raw %} \"quotes\" 'single' \\back\\slash\n\nnew\tline  \n"


def conversations(name):
    """(label, messages, extra_context) tuples for the template `name`."""
    convs = [
        ("single_user", [U("Hello!")], {}),
        ("system_user", [S("You are terse."), U("What is 2+2?")], {}),
        ("multi_turn", [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")], {}),
        ("multi_turn_system", [S("Be nice."), U("Hi"), A("Hey."), U("Bye")], {}),
        ("assistant_last", [U("Hi"), A("Hello there.")], {}),
        ("tricky_content", [S(TRICKY), U(TRICKY), A(TRICKY), U(TRICKY)], {}),
        ("empty_content", [U(""), A(""), U("")], {}),
        ("whitespace_only", [U("   \n\t "), A(" \n")], {}),
        ("two_users_in_a_row", [U("one"), U("two")], {}),
        ("assistant_first", [A("I speak first"), U("ok")], {}),
        ("system_in_middle", [U("a"), S("b"), U("c")], {}),
        ("unknown_role", [{"role": "narrator", "content": "Once upon a time"}], {}),
        ("content_parts", [U([{"type": "text", "text": "Look: "}, {"type": "image"},
                              {"type": "text", "text": " what is it?"}])], {}),
        ("content_none", [U("q"), A(None), U("r")], {}),
        ("missing_content", [U("q"), {"role": "assistant"}], {}),
        ("empty_conversation", [], {}),
        ("extra_keys", [{"role": "user", "content": "hi", "name": "bob", "id": 7}], {}),
    ]
    lname = name.lower()
    if "qwen" in lname or "llama-3" in lname:
        convs += [
            ("tools", [U("Weather in Zürich?")], {"tools": [WEATHER_TOOL]}),
            ("tools_system", [S("Use tools."), U("Weather?")], {"tools": [WEATHER_TOOL]}),
            ("tool_call_roundtrip", [U("Weather in Zürich?"), A("", tool_calls=[TOOL_CALL]),
                                     {"role": "tool", "content": "{\"temp\": 21}"},
                                     {"role": "tool", "content": "sunny"}, U("thanks")],
             {"tools": [WEATHER_TOOL]}),
            ("tool_call_with_text", [U("Weather?"), A("Let me check.", tool_calls=[TOOL_CALL]),
                                     {"role": "tool", "content": "21C"}], {"tools": [WEATHER_TOOL]}),
            ("tool_call_string_args", [U("Weather?"), A(None, tool_calls=[TOOL_CALL_STR_ARGS])],
             {"tools": [WEATHER_TOOL]}),
            ("two_tool_calls", [U("Weather x2?"), A("", tool_calls=[TOOL_CALL, TOOL_CALL_STR_ARGS])],
             {"tools": [WEATHER_TOOL]}),
        ]
    if "qwen3" in lname:
        think = "<think>\nLet me think.\n</think>\n\nThe answer is 4."
        convs += [
            ("thinking_off", [U("2+2?")], {"enable_thinking": False}),
            ("thinking_on", [U("2+2?")], {"enable_thinking": True}),
            ("think_in_history", [U("2+2?"), A(think), U("and 3+3?")], {}),
            ("think_last", [U("2+2?"), A(think)], {}),
            ("think_last_thinking_off", [U("2+2?"), A(think)], {"enable_thinking": False}),
            ("reasoning_content", [U("2+2?"), A("4", reasoning_content="simple sum"), U("ok")], {}),
            ("reasoning_content_last", [U("2+2?"), A("4", reasoning_content="simple sum")], {}),
            ("thinking_field", [U("2+2?"), A("4", thinking="quick")], {}),
            ("tool_response_as_user", [U("<tool_response>x</tool_response>"), A("done")], {}),
            ("think_after_tool", [U("Weather?"), A("", tool_calls=[TOOL_CALL]),
                                  {"role": "tool", "content": "21C"}, A(think)], {"tools": [WEATHER_TOOL]}),
        ]
    if "llama-3" in lname:
        convs += [
            ("date_string", [U("What day is it?")], {"date_string": "26 Jul 2024"}),
            ("tools_not_in_user_message", [S("sys"), U("Weather?")],
             {"tools": [WEATHER_TOOL], "tools_in_user_message": False, "date_string": "01 Jan 2025"}),
            ("custom_tools", [U("Weather?")], {"custom_tools": [WEATHER_TOOL], "date_string": "01 Jan 2025"}),
            ("tools_no_user", [S("only system")], {"tools": [WEATHER_TOOL], "date_string": "01 Jan 2025"}),
            ("ipython", [U("x"), {"role": "ipython", "content": {"result": [1, 2]}}], {"date_string": "01 Jan 2025"}),
        ]
    if "gemma" in lname:
        convs += [
            ("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys parts"}]}, U("hi")], {}),
            ("int_content", [U(42)], {}),
        ]
    return convs


def real_cases():
    cases = []
    for name, template, config in discover_templates():
        tokens = special_tokens(config)
        for label, messages, extra in conversations(name):
            for agp in (True, False):
                # Without date_string, Llama 3 calls strftime_now(): both
                # renderers format today's date (compared within one run).
                context = {**tokens, **extra}
                cases.append((f"{name}/{label}/agp={agp}", (template, messages, context, agp)))
    return cases


# ----------------------------------------------------------------------------
# Synthetic templates: the subset itself


SYNTHETIC = [
    # whitespace control, trim_blocks / lstrip_blocks, comments, raw
    "a\n  {% if true %}\n    b\n  {% endif %}\nc",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "a\n  {%+ if true %}b{% endif +%}\nc",
    "x {{- ' y ' -}} z {{ 'w' }} \n",
    "line\n{# comment #}\nnext {#- trimmed -#}   end\n",
    "  {# lstripped comment #}\nafter",
    "{% raw %}{{ not evaluated }}{% endraw %}\n{%- raw -%}  x  {%- endraw %}",
    "tail newline kept?\n\n",
    "\r\nwindows\r\nlines\r\n{% if true %}\r\nyes\r\n{% endif %}\r\n",
    "{{ 'a' }}\n{{ 'b' }}\n",
    "  {{ 'indented var' }}\n  {% set x = 1 %}  after set",
    "{% for i in range(3) %}\n  {{ i }}\n{% endfor %}",
    "\u3000{%- if true %}unicode space stripped{% endif %}",
    # literals
    "{{ 'a\\nb\\t\\\\c\\'d' }}|{{ \"\\u00e9\\x41\\101\\N\" }}|{{ 'x' 'y' }}",
    "{{ 1_000 }} {{ 0x1f }} {{ 0o17 }} {{ 0b101 }} {{ 1.5e3 }} {{ 2.50 }} {{ 1e-7 }} {{ .5 if false else 0.0 }}",
    "{{ [1, 'a', none, true, 1.0, [2], {'k': 'v'}] }} {{ (1,) }} {{ () }} {{ {} }} {{ {'a': 1, 2: 'b', none: 3} }}",
    "{{ True }} {{ False }} {{ None }} {{ none is none }} {{ true is true }}",
    # arithmetic and operators
    "{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -2 }} {{ -2 ** 2 }}",
    "{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ 10 / 4 * 2 }} {{ 1 + 1.5 }} {{ true + true }} {{ 3 * 'ab' }} {{ [1] * 3 }}",
    "{{ 'a' ~ 1 ~ none ~ 2.0 }} {{ 1 ~ 2 + 3 }} {{ 'x' + 'y' }} {{ [1] + [2, 3] }} {{ (1,) + (2,) }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 'ab' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 2 <= 2 >= 1 }}",
    "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ not 'x' in 'y' }}",
    "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ '' and 1 }} {{ not 0 }} {{ not not 'a' }}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}] {{ 1 if 0 else 2 if 0 else 3 }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 'a' - 1 }}",
    "{{ 'a' < 1 }}",
    "{{ -'a' }}",
    "{{ 9999999999 * 9999999 }}",
    # variables, attributes, subscripts, slices
    "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ d['b']['c'] }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ d.missing }}|{{ l[10] }}|",
    "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[-1] }}",
    "{{ range(10)[2:8:3] }} {{ range(5)[::-1] }} {{ range(3)[1] }} {{ (1, 2, 3)[1:] }} {{ 'héllo wörld'[3:8] }}",
    "{{ d.keys() }} {{ d.values() }} {{ d.items() }} {{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }}",
    "{{ missing }}|{{ missing is defined }}|{{ missing is undefined }}|{{ d.a is defined }}|{{ d.zz is defined }}",
    "{{ missing.attr }}",
    "{{ missing['k'] }}",
    "{{ missing + 1 }}",
    "{{ missing() }}",
    "{% for x in missing %}{{ x }}{% else %}empty{% endfor %}{{ missing|length }}{{ missing|default('dflt') }}",
    "{{ l[1.5] }}|{{ s['upper']() }}|{{ d['items']() }}",
    # tests
    "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'a' is string }} {{ 1 is number }}",
    "{{ 1 is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ true is number }} {{ false is false }}",
    "{{ d is mapping }} {{ l is mapping }} {{ l is sequence }} {{ s is sequence }} {{ d is sequence }} {{ d.keys() is sequence }}",
    "{{ l is iterable }} {{ 1 is iterable }} {{ s is iterable }} {{ none is none }} {{ 0 is none }} {{ x is not defined }}",
    "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'aB' is lower }} {{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 2 is gt 1 }} {{ 2 is ge 3 }}",
    "{{ 1 is lt 2 }} {{ 1 is le 0 }} {{ 'x' is in 'xyz' }} {{ 1 is equalto 1 }} {{ 2 is greaterthan 3 }} {{ 2 is lessthan 3 }}",
    "{{ 1 is == 1 }} {{ 1 is != 1 }} {{ range is callable }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ 'nope' is filter }}",
    "{{ none is sameas none }} {{ false is sameas false }} {{ (l|first) is defined }} {{ namespace() is callable }}",
    "{{ 'a'|safe is escaped }} {{ 'a' is escaped }} {{ (1, 2) is sequence }} {{ range(2) is sequence }}",
    # filters
    "{{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Hello World'|upper }}|{{ 'Hello'|lower }}|{{ 'hello wORLD-x(y'|title }}",
    "{{ 'hELLO world'|capitalize }}|{{ [1,2,3]|length }}|{{ 'héllo'|count }}|{{ d|length }}|{{ l|first }}|{{ l|last }}",
    "{{ l|join(', ') }}|{{ [1, none, 'x']|join }}|{{ users|join(', ', attribute='name') }}|{{ 'abc'|join('-') }}",
    "{{ none|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ missing|d('x') }}|{{ 0|d(5, boolean=true) }}",
    "{{ d|tojson }}|{{ l|tojson }}|{{ 'é\"\\n\\u0001'|tojson }}|{{ none|tojson }}|{{ 1.0|tojson }}|{{ (1, 2)|tojson }}",
    "{{ d|tojson(indent=2) }}|{{ l|tojson(indent=4) }}|{{ {}|tojson(indent=2) }}|{{ []|tojson(indent=2) }}",
    "{{ d|tojson(separators=(',', ':')) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}",
    "{{ {1: 'a', none: 'b', true: 'c', 1.5: 'd'}|tojson }}|{{ d|tojson(indent='\\t') }}|{{ 'x'|tojson(true) }}",
    "{{ missing|tojson }}",
    "{{ 42|string }}|{{ 3.0|string }}|{{ '42'|int }}|{{ '4.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(7) }}|{{ 4.7|int }}|{{ '0x1f'|int(0, 16) }}",
    "{{ '3.5'|float }}|{{ 'x'|float }}|{{ 2|float }}|{{ ' 1_0 '|int }}|{{ '1e3'|float }}|{{ none|int }}|{{ true|int }}",
    "{{ 'abc'|list }}|{{ d|list }}|{{ d|items|list }}|{{ l|reverse|list }}|{{ 'abc'|reverse }}|{{ d|reverse|list }}",
    "{{ 'a b a'|replace('a', 'x') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'ab'|replace('', '-') }}",
    "{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675|round(2) }}|{{ 2.1|round(0, 'ceil') }}|{{ 2.9|round(0, 'floor') }}|{{ 3|round }}|{{ 1234|round(-2) }}",
    "{{ -3|abs }}|{{ -2.5|abs }}|{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['b', 'A', 'c']|sort }}|{{ ['b', 'A']|sort(case_sensitive=true) }}",
    "{{ users|sort(attribute='age')|map(attribute='name')|list }}|{{ users|sort(attribute='name,age')|map(attribute='age')|list }}",
    "{{ users|selectattr('age', 'gt', 20)|map(attribute='name')|join }}|{{ users|rejectattr('admin')|map(attribute='name')|join }}",
    "{{ users|selectattr('admin')|list|length }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3, 4]|reject('even')|list }}",
    "{{ [0, 1, '', 'a', none]|select|list }}|{{ [1, 2]|map('string')|join('+') }}|{{ ['a', 'b']|map('upper')|list }}",
    "{{ users|map(attribute='missing', default='?')|list }}|{{ users|map(attribute='name')|first }}|{{ [[1, 2], [3]]|map('length')|list }}",
    "{{ [1, 2, 1, 'a', 'A']|unique|list }}|{{ ['a', 'A']|unique(case_sensitive=true)|list }}|{{ users|unique(attribute='admin')|map(attribute='name')|list }}",
    "{{ d|dictsort }}|{{ {'b': 1, 'a': 2}|dictsort(by='value') }}|{{ {'b': 1, 'A': 2}|dictsort(reverse=true) }}",
    "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}",
    "{{ [1, 2, 3, 4, 5]|batch(2)|list }}|{{ [1, 2, 3]|batch(2, 'x')|list }}|{{ [1, 2, 3, 4, 5]|slice(2)|list }}",
    "{{ [1, 2, 3]|sum }}|{{ users|sum(attribute='age') }}|{{ [1.5, 2]|sum(start=1) }}|{{ [3, 1, 2]|max }}|{{ ['a', 'B']|min }}|{{ users|max(attribute='age')|attr('name') }}",
    "{{ 'hello'|center(11) }}|{{ 'one two  three'|wordcount }}|{{ 'hello world foo'|truncate(9) }}|{{ 'hello world'|truncate(8, true) }}",
    "{{ '%s and %d'|format('x', 3) }}|{{ '<b>'|e }}|{{ '<b>'|escape }}|{{ '<b>'|safe }}|{{ '<&>'|forceescape }}",
    "{{ {'a': 1}|attr('items') is defined }}|{{ {'a': 1}|attr('a') is defined }}|{{ 'x'|attr('upper') is callable }}",
    "{{ []|first }}|{{ []|last }}|{{ []|max }}|{{ users|first|attr('name') }}",
    "{{ [1,2]|map('int')|length }}",
    "{{ [1]|select|first }}|{{ (users|selectattr('admin'))|first|attr('name') }}",
    "{% set g = [1, 2, 3]|select %}{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|",
    "{{ [3, 'a']|sort }}",
    "{{ 'ab'|indent(2) }}{{ 5|indent }}",
    # str methods
    "{{ ' x '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ ' x '.lstrip() }}|{{ ' x '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}",
    "{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'a b c'.split(none, 1) }}|{{ 'l1\\nl2\\r\\nl3'.splitlines() }}",
    "{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'hello'.startswith('l', 2) }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}",
    "{{ 'hi there'.title() }}|{{ 'hi there'.capitalize() }}|{{ 'aXb'.swapcase() }}|{{ 'a-b-c'.replace('-', '+', 1) }}",
    "{{ 'hello'.find('l') }}|{{ 'hello'.rfind('l') }}|{{ 'hello'.find('z') }}|{{ 'hello'.count('l') }}|{{ 'héllo'.index('l') }}",
    "{{ '-'.join(['a', 'b']) }}|{{ 'x'.center(5, '*') }}|{{ 'x'.ljust(3) }}.|{{ 'x'.rjust(3, '0') }}|{{ '42'.zfill(5) }}|{{ '-4'.zfill(4) }}",
    "{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}|{{ 'prefix-x'.removeprefix('prefix-') }}|{{ 'x.txt'.removesuffix('.txt') }}",
    "{{ 'abc'.isalpha() }}|{{ '123'.isdigit() }}|{{ 'a1'.isalnum() }}|{{ '  '.isspace() }}|{{ 'ab'.islower() }}|{{ 'AB'.isupper() }}|{{ 'Ab Cd'.istitle() }}",
    "{{ '{} and {}'.format(1, 'x') }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{name}!'.format(name='bob') }}|{{ '{:>5}|{:<4}|{:^7}'.format('a', 'b', 'c') }}",
    "{{ '{:.2f}|{:5d}|{:,}|{:x}|{!r}'.format(3.14159, 42, 1234567, 255, 'q') }}|{{ '{{x}}'.format() }}",
    "{{ '%-5s|%5s|%.2f|%03d|%x|%r|%%' % ('a', 'b', 2.5, 7, 255, 'z') }}|{{ '%(a)s-%(b)d' % {'a': 'x', 'b': 2} }}|{{ '%s' % 'single' }}",
    "{{ '%s %s' % ('one',) }}",
    "{{ 'x'.nosuchmethod() }}",
    # statements: if / for / loop / set / namespace / macro / call / filter / with / break / continue
    "{% if 0 %}a{% elif '' %}b{% elif 'x' %}c{% else %}d{% endif %}",
    "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
    "{% for x in l %}[{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.cycle('a', 'b') }}|{{ loop.depth }}{{ loop.depth0 }}]{% endfor %}",
    "{% for x in [1, 1, 2] %}{{ loop.changed(x) }}{% endfor %}|{% for x in l %}{{ loop }}{% endfor %}",
    "{% for x in l if x != 2 %}{{ x }}:{{ loop.index }}/{{ loop.length }}{{ loop.last }} {% endfor %}",
    "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'héy' %}{{ c }}.{% endfor %}",
    "{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}|{% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ b }}{{ c }}{% endfor %}",
    "{% for a, b in [[1, 2, 3]] %}{% endfor %}",
    "{% for x in [] %}body{% else %}else-branch{% endfor %}|{% for x in [1] if false %}b{% else %}filtered-away{% endfor %}",
    "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}",
    "{% set x = 1 %}{% for i in range(2) %}{{ x }}{% set x = x + 10 %}{{ x }} {% endfor %}{{ x }}",
    "{% set ns = namespace(total=0, names=[]) %}{% for u in users %}{% set ns.total = ns.total + u.age %}{% set ns.names = ns.names + [u.name] %}{% endfor %}{{ ns.total }} {{ ns.names }}",
    "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c }}|{{ ns }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}",
    "{% set block %}\n  captured {{ 1 + 1 }}\n{% endset %}[{{ block }}]{% set up | upper | trim %} shout {% endset %}[{{ up }}]",
    "{% set x = 5 %}{% set y %}{% set x = 6 %}{{ x }}{% endset %}{{ y }}{{ x }}",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Hi') }} {{ greet(greeting='Yo', name='Cy') }}",
    "{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m(1) }}{{ m }}|{{ m.name }}",
    "{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}",
    "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) }}",
    "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 }}{% endcall %}",
    "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}({{ x * 10 }}){% endcall %}",
    "{% filter upper %}shout {{ 'this' }}{% endfilter %}|{% filter replace('a', 'o') | title %}banana band{% endfilter %}",
    "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]",
    "{% generation %}tracked {{ 1 }}{% endgeneration %}",
    "{% set x = {'k': [1, {'z': 'deep'}]} %}{{ x.k[1].z }}{{ x['k'][0] }}",
    "{{ dict(a=1, b=2) }}|{{ dict([('x', 1)]) }}|{{ dict({'a': 1}, b=2) }}|{{ dict.fromkeys(['a', 'b'], 0) }}|{{ range(2, 10, 3)|list }}",
    "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}{{ c.current }}|{% set j = joiner('/') %}{{ j() }}x{{ j() }}y{{ j() }}",
    "{{ raise_exception('custom failure message') }}",
    "{% if messages|length > 5 %}{{ raise_exception('too many') }}{% endif %}ok",
    "{{ range(200000)|length }}",
    "{{ strftime_now('%Y') is string }}",
    "{% set ns = namespace() %}{% set ns._hidden = 1 %}",
    "{% set s2 = 'str' %}{% set s2.attr = 1 %}",
    "{% set l2 = [1] %}{{ l2.pop() }}",
    "{% set d2 = {'a': 1} %}{{ d2.update({'b': 2}) }}",
    "{{ messages[0].role }}|{{ messages[0]['content'] }}|{{ messages|map(attribute='role')|join(',') }}|{{ add_generation_prompt }}",
    "{{ tools }}|{{ documents }}|{{ tools is none }}|{{ tools is defined }}",
    "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}",
    "{{ messages[0].content.foo }}|{{ messages[5] }}|",
    "{{ messages[5].content }}",
    "{{ {'a': 1} == {'a': 1.0} }}|{{ [1, 2] == (1, 2) }}|{{ 'x' == 'x'|safe }}|{{ d.keys() == d.keys() }}|{{ missing == missing }}",
    "{{ [1, 2, 3][True] }}|{{ 'abc'[-10] }}|{{ ''[0] }}|",
    "{{ 0.1 * 3 }}|{{ 1e22 }}|{{ 1e16 }}|{{ 123456789.123 }}|{{ -0.0 }}|{{ 2.0 ** 0.5 }}|{{ 10.0 ** 20 / 7 }}|{{ 1 / 3 }}",
    # control flow corner cases found by differential fuzzing
    "{% for x in [1, 2] %}{% break %}{% else %}else-after-break{% endfor %}|{% for x in [1] %}{% continue %}{% else %}E{% endfor %}",
    "{% for x in [1, 2, 3] %}{% filter upper %}a{% if x == 2 %}{% break %}{% endif %}b{% endfilter %}{% endfor %}",
    "{% for x in [1, 2, 3] %}{% set s %}{{ x }}{% if x == 2 %}{% continue %}{% endif %}{% endset %}[{{ s }}]{% endfor %}",
    "{% for x in [1, 2] %}{% for y in [] %}{% else %}{% break %}{% endfor %}{{ x }}{% endfor %}|after",
    "{% for x in [3, 1, 2] if x > 1 %}{{ loop.last }}{{ loop.nextitem }}{% endfor %}",
    # constant folding: a failing slice of a constant is undefined, not an error
    "[{{ 7[1:] }}][{{ {'k': 1}[:2] }}][{{ (1 is none)[1:] is defined }}]",
    "{{ x[1:] }}",
    "{{ 'abc' % [1, 2] }}|{{ 'A b' % {'k': 1} }}|{{ [1, 2]|truncate(5) }}|{{ (1|items) is defined }}",
    "{{ 'abc' % 5 }}",
    # macros: recursion, varargs/kwargs, caller with arguments, closures
    "{% macro t(n) %}{% if n > 0 %}{{ n }}{{ t(n - 1) }}{% endif %}{% endmacro %}{{ t(5) }}",
    "{% set top = 'T' %}{% macro m() %}{{ top }}{% endmacro %}{% set top = 'U' %}{{ m() }}{% for i in [1] %}{% set top = 'L' %}{{ m() }}{% endfor %}",
    "{% macro m(a, b=a * 2) %}{{ a }},{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, 5) }}",
    "{% macro m(x) %}{{ x }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}",
    "{% macro json_type(spec) %}{% if spec.type == 'array' %}List[{{ json_type(spec['items']) }}]{% elif spec.type is iterable and spec.type is not string %}Union[{% for t in spec.type %}{{ json_type({'type': t}) }}{% if not loop.last %},{% endif %}{% endfor %}]{% else %}{{ {'string': 'str', 'integer': 'int'}[spec.type] | default('Any') }}{% endif %}{% endmacro %}{{ json_type({'type': 'array', 'items': {'type': ['string', 'integer', 'null']}}) }}",
    "{{ '{\n'|indent(4, first=True) }}{{ ({'a': [1, {'b': none}]}|tojson(indent=4))|indent(8) }}",
    "{{ 'Straße'|upper }}|{{ 'ΑΣ ΟΔΟΣ'|lower }}|{{ 'ǆemal'|capitalize }}|{{ 'éa'|title }}|{{ 'İ'|lower|length }}",
    "{{ '\u00a0x\u2003'|trim }}|{{ 'a\u2028b'.splitlines() }}|{{ ['\u00a0', '\\x7f', '\u200b', 'é', '\U0001F600'] }}",
]


# Valid jinja2 whose transformers rendering scalpel refuses on purpose: the
# Python output holds a memory address (bound methods, generators), a Python
# type scalpel does not model (bytes), or an integer beyond 64 bits. scalpel
# must raise (Unsupported, or InvalidArgument for the integer limit), never
# render something else.
SYNTHETIC_REFUSED = [
    "{{ d.items }}",
    "{{ 'abc'.upper }}",
    "{{ [1, 2]|select }}",
    "{{ (1|items) ~ '' }}",
    "{{ 'a'.encode() }}",
    "{{ 10 ** 20 }}",
    "{{ 99999999999999999999 }}",
]


SYNTH_CONTEXT = {
    "d": {"a": 1, "b": {"c": "deep"}, "items": "shadowed?"},
    "l": [1, 2, 3],
    "s": "héllo",
    "users": [{"name": "ann", "age": 31, "admin": True},
              {"name": "Bob", "age": 19, "admin": False},
              {"name": "cy", "age": 25, "admin": False}],
}


def synthetic_cases():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    return [(f"synthetic[{i}]", (t, msgs, SYNTH_CONTEXT, True)) for i, t in enumerate(SYNTHETIC)]


def refused_cases():
    msgs = [{"role": "user", "content": "Hi"}]
    return [(f"refused[{i}]", (t, msgs, SYNTH_CONTEXT, True)) for i, t in enumerate(SYNTHETIC_REFUSED)]


# ----------------------------------------------------------------------------
# Comparison


def _compare(cases):
    expected = [render_transformers(*c) for _, c in cases]
    got = render_scalpel_many([c for _, c in cases])
    results = []
    for (label, case), e, g in zip(cases, expected, got):
        if e[0] == "ok":
            ok = g == e
        else:
            # transformers raised: scalpel must raise (ValueError, or a
            # FormatError for syntax errors), never render.
            ok = g[0] == "error"
        results.append((label, case, e, g, ok))
    return results


_REAL = real_cases()
_SYNTH = synthetic_cases()
_REFUSED = refused_cases()


@pytest.fixture(scope="module")
def real_results():
    if not _REAL:
        pytest.fail(f"no chat templates found under {SHARED}: set SCALPEL_SHARED to the shared data folder",
                    pytrace=False)
    return {r[0]: r for r in _compare(_REAL)}


@pytest.fixture(scope="module")
def synth_results():
    return {r[0]: r for r in _compare(_SYNTH)}


# Without templates (no ../shared), one placeholder case whose fixture fails the run.
@pytest.mark.parametrize("label", [label for label, _ in _REAL] or ["no-chat-templates"])
def test_real_template_parity(label, real_results):
    _, case, expected, got, ok = real_results[label]
    assert ok, f"{label}\n  transformers: {expected!r}\n  scalpel:      {got!r}"


@pytest.mark.parametrize("label", [label for label, _ in _SYNTH])
def test_synthetic_parity(label, synth_results):
    _, case, expected, got, ok = synth_results[label]
    assert ok, f"{case[0]!r}\n  transformers: {expected!r}\n  scalpel:      {got!r}"


@pytest.mark.parametrize("label,case", _REFUSED)
def test_refused_constructs_raise(label, case):
    expected = render_transformers(*case)
    assert expected[0] == "ok", f"transformers was expected to render {case[0]!r}, got {expected!r}"
    (got,) = render_scalpel_many([case])
    assert got[0] == "error", f"{case[0]!r}: scalpel rendered {got[1]!r}, transformers {expected[1]!r}"
    assert "Unsupported" in got[1] or "64-bit" in got[1], got[1]


def test_templates_were_found():
    names = {label.split("/")[0] for label, _ in _REAL}
    assert names, f"no chat templates found under {SHARED}"


if __name__ == "__main__":
    verbose = "-v" in sys.argv
    for title, cases in (("real templates", _REAL), ("synthetic", _SYNTH)):
        results = _compare(cases)
        bad = [r for r in results if not r[4]]
        print(f"{title}: {len(results) - len(bad)}/{len(results)} pass")
        for label, case, e, g, ok in bad:
            print(f"FAIL {label}: {case[0][:200]!r}\n   transformers: {e!r}\n   scalpel:      {g!r}")
        if verbose:
            for label, case, e, g, ok in results:
                if ok:
                    print(f"ok   {label}: {e[1][:160]!r}")
