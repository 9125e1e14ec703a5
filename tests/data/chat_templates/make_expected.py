#!/usr/bin/env python3
"""Writes expected.json: every template here rendered by Jinja2 as transformers renders chat
templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, HF's tojson,
raise_exception and strftime_now, tools/documents passed as None unless given), on several
conversations, plus error cases. src/template/chat_template_test.cpp must reproduce every byte.

Each case also records `expected_sorted`, the output when every JSON object's keys are sorted
(what a renderer fed nlohmann::json, whose objects are sorted maps, must produce), when it differs.

Usage: python3 tests/data/chat_templates/make_expected.py   (needs the jinja2 module)
"""
import copy
import json
import os
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


class AssistantTracker(Extension):
    # transformers' {% generation %} tag: renders its body unchanged.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def sort_keys(x):
    if isinstance(x, dict):
        return {k: sort_keys(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [sort_keys(v) for v in x]
    return x


TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}, {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time.", "parameters": {"type": "object", "properties": {}}},
}]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system": [{"role": "system", "content": "You are a helpful assistant."},
               {"role": "user", "content": "What is 2+2?"}],
    "multi": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "Hi there"},
              {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Tell me a joke."}],
    "multi_nosys": [{"role": "user", "content": "  padded question  \n"},
                    {"role": "assistant", "content": "\nAn answer.\n"},
                    {"role": "user", "content": "Thanks"}],
    "unicode": [{"role": "user", "content": "Grüße, 世界! 🌍 «ünïcödé» \"quotes\" \\ back\nnewline\ttab <b>&</b>"},
                {"role": "assistant", "content": "Ça va ✓ — emoji 👍🏽"},
                {"role": "user", "content": "日本語で答えて"}],
    "tools": [{"role": "system", "content": "You can call tools."},
              {"role": "user", "content": "Weather in Zürich?"},
              {"role": "assistant", "content": "",
               "tool_calls": [{"id": "call12345", "type": "function",
                               "function": {"name": "get_weather",
                                            "arguments": {"location": "Zürich", "unit": "celsius"}}}]},
              {"role": "tool", "tool_call_id": "call12345", "content": "{\"temperature\": 21.5}"},
              {"role": "user", "content": "And the time?"}],
    "thinking": [{"role": "user", "content": "Solve x+1=2"},
                 {"role": "assistant", "content": "<think>\nx = 2 - 1\n</think>\n\nx = 1"},
                 {"role": "user", "content": "Now y+2=5"}],
    "parts": [{"role": "system", "content": [{"type": "text", "text": "Sys in parts."}]},
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe this. "}]}],
    "bad_alternation": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
}

# Which conversations (and extra variables) each model template is rendered with.
MODEL_CASES = {
    "llama3.jinja": ["single", "system", "multi", "multi_nosys", "unicode"],
    "llama3_2_tools.jinja": ["single", "system", "multi", "unicode", ("tools", {"tools": TOOLS}),
                             ("system", {"tools": TOOLS, "tools_in_user_message": False})],
    "mistral_v0_1.jinja": ["single", "multi_nosys", "unicode", "bad_alternation", "system"],
    "mistral_v0_3.jinja": ["single", "system", "multi", "multi_nosys", "unicode", "bad_alternation",
                           ("tools", {"tools": TOOLS}), ("multi", {"tools": TOOLS})],
    "chatml_qwen_tools.jinja": ["single", "system", "multi", "unicode", "tools", ("tools", {"tools": TOOLS})],
    "qwen3_thinking.jinja": ["single", "system", "multi", "thinking", ("thinking", {"enable_thinking": False}),
                             ("tools", {"tools": TOOLS})],
    "granite4.jinja": ["single", "system", "multi", "unicode", "parts", ("tools", {"tools": TOOLS}),
                       ("system", {"documents": [{"doc_id": 1, "title": "Doc", "text": "Some text."}]})],
    "nemotron_h.jinja": ["single", "system", "multi", "multi_nosys", "unicode", ("tools", {"tools": TOOLS})],
    "falcon_h1.jinja": ["single", "system", "multi", "unicode", ("tools", {"tools": TOOLS})],
    "jamba.jinja": ["single", "system", "multi", "unicode", ("tools", {"tools": TOOLS})],
    "zamba2.jinja": ["single", "system", "multi", "unicode"],
    "gemma.jinja": ["single", "multi_nosys", "unicode", "system", "bad_alternation"],
    "gemma3.jinja": ["single", "multi", "multi_nosys", "unicode", "parts", "bad_alternation"],
}

UNIT_DATA = {
    "name": "World", "count": 3, "ratio": 0.5, "flag": True, "nothing": None,
    "letters": ["b", "a", "C"], "nums": [3, 1, 2],
    "nested": {"k": {"v": [1, {"deep": "x"}]}, "z": "last"},
    "users": [{"name": "ann", "age": 31, "admin": True}, {"name": "bob", "age": 25},
              {"name": "cy", "age": 40, "admin": False}],
    "text": "  Hello, World!  ", "unicode": "Grüße 世界 🌍", "empty": "", "emptylist": [], "emptydict": {},
    "big": 12345678901234, "neg": -7, "float_int": 2.0, "tiny": 1e-07, "huge": 1e22,
}

# Templates that must fail, and where: "parse" (Jinja2's compile step) or "render".
ERROR_CASES = [
    ("unterminated_if", "{% if true %}never closed"),
    ("unterminated_for", "{% for m in messages %}{{ m }}"),
    ("unterminated_var", "text {{ messages"),
    ("unterminated_block", "{% if true "),
    ("unterminated_comment", "a {# comment"),
    ("unterminated_string", "{{ 'abc }}"),
    ("unknown_filter", "{{ messages | no_such_filter }}"),
    ("unknown_test", "{% if messages is no_such_test %}{% endif %}"),
    ("unknown_tag", "{% frobnicate %}"),
    ("bad_end_tag", "{% if true %}{% endfor %}"),
    ("bad_expression", "{{ 1 + }}"),
    ("unbalanced", "{{ (1 + 2 }}"),
    ("break_outside_loop", "{% break %}"),
    ("raise_exception", "{{ raise_exception('Custom failure: roles must alternate') }}"),
    ("undefined_attribute", "{{ nope.attr }}"),
    ("add_types", "{{ 1 + 'a' }}"),
    ("division_by_zero", "{{ 1 / 0 }}"),
    ("unpack", "{% for a, b in [1, 2] %}{% endfor %}"),
    ("call_undefined", "{{ nope() }}"),
    ("call_non_callable", "{{ messages() }}"),
    ("tojson_undefined", "{{ nope | tojson }}"),
    ("compare_types", "{{ 1 < 'a' }}"),
    ("list_append_unsafe", "{% set l = [] %}{{ l.append(1) }}"),
    ("not_iterable", "{% for x in 5 %}{% endfor %}"),
]


def render_case(env, source, messages, add_generation_prompt, extra):
    variables = {"messages": messages, "tools": None, "documents": None,
                 "add_generation_prompt": add_generation_prompt, "bos_token": "<s>", "eos_token": "</s>"}
    variables.update(extra)
    try:
        template = env.from_string(source)
    except Exception as e:  # TemplateSyntaxError, or Python's SyntaxError for a stray {% break %}
        return {"error": str(e).split("\n")[0], "error_phase": "parse"}
    try:
        return {"expected": template.render(**variables)}
    except Exception as e:  # Jinja2 surfaces Python errors (TypeError, ZeroDivisionError) as is
        return {"error": str(e).split("\n")[0], "error_phase": "render"}


def add_case(cases, env, name, source_file, source, messages, agp, extra):
    case = {"name": name, "template": source_file, "messages": messages, "add_generation_prompt": agp,
            "extra": extra}
    result = render_case(env, source, copy.deepcopy(messages), agp, copy.deepcopy(extra))
    case.update(result)
    if "expected" in result:
        sorted_result = render_case(env, source, sort_keys(messages), agp, sort_keys(extra))
        if sorted_result.get("expected") != result["expected"]:
            case["expected_sorted"] = sorted_result.get("expected", sorted_result.get("error"))
    cases.append(case)


def main():
    env = make_env()
    cases = []
    for template_file, conversations in MODEL_CASES.items():
        source = open(os.path.join(HERE, template_file), encoding="utf-8").read()
        for entry in conversations:
            conv, extra = (entry, {}) if isinstance(entry, str) else entry
            for agp in (False, True):
                name = f"{template_file}:{conv}{'+' + ','.join(sorted(extra)) if extra else ''}:{'gen' if agp else 'nogen'}"
                add_case(cases, env, name, template_file, source, CONVERSATIONS[conv], agp, extra)
    for unit_file in sorted(os.listdir(os.path.join(HERE, "unit"))):
        rel = "unit/" + unit_file
        source = open(os.path.join(HERE, rel), encoding="utf-8").read()
        add_case(cases, env, rel, rel, source, CONVERSATIONS["multi"], True, {"data": UNIT_DATA})
    for name, source in ERROR_CASES:
        case = {"name": "error:" + name, "source": source, "messages": CONVERSATIONS["multi"],
                "add_generation_prompt": True, "extra": {}}
        case.update(render_case(env, source, CONVERSATIONS["multi"], True, {}))
        assert "error" in case, name
        cases.append(case)
    # made_on: the day strftime_now rendered (the test maps that day's dates onto its own day).
    out = {"jinja2_version": jinja2.__version__, "made_on": datetime.now().strftime("%Y-%m-%d"), "cases": cases}
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
