"""Chat template oracle: cemoe's ChatTemplate (trainer/data/chat_template.h, through the chat_render
driver) against transformers' tokenizer.apply_chat_template(messages, tokenize=False, ...).

usage: chat_template_oracle.py --chat-render BUILD/tests/oracle/chat_render --work DIR [--only CASE,...]

Cases (nothing downloaded: the tokenizer is a tiny WordLevel model made here, wrapped in
PreTrainedTokenizerFast with only bos_token / eos_token set, so that the template sees exactly the
variables cemoe provides):
    builtins      each built-in (tulu, phi3, chatml) on every conversation below, with and without
                  add_generation_prompt, the template passed as chat_template=.
    folders       model folders written here: tokenizer_config.json with a "chat_template" string
                  and {"content": ...} special tokens; the same plus a different chat_template.jinja
                  (with a trailing newline; transformers uses the .jinja); a "chat_template" list
                  with a "default" entry. transformers loads each folder with from_pretrained and
                  renders with the folder's own template.
    constructs    small templates exercising each supported Jinja construct (whitespace control,
                  trim_blocks / lstrip_blocks, comments, set / namespace, loop variables, filters,
                  tests, slices, string escapes, conditional expressions, raise_exception, CRLF
                  sources) and templates in the style of well-known models (Zephyr, Llama 2,
                  Mistral, Gemma, Llama 3), on a few conversations each.
    (training)    with builtins, for every built-in and conversation: the segments of RenderForTraining
                  concatenate to transformers' rendering, and each assistant segment is the
                  open-instruct rule computed here with transformers (render(messages[:i+1]) minus
                  render(messages[:i], add_generation_prompt=True), without a trailing eos_token
                  when the turn is not last and the conversation does not have it there).
A case where transformers raises must make cemoe raise too (raise_exception); any other difference
of one character fails the case.
"""
import argparse
import json
import os
import subprocess

import oracle_common as oc

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CONVERSATIONS = {
    "user_only": [{"role": "user", "content": "Hello"}],
    "sys_user_asst": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ],
    "no_system_2turns": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the expert route the token? To balance the load."},
    ],
    "system_3turns": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "3"},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français. 日本語も OK 😀"},
        {"role": "user", "content": "Ünïcödé\u00a0text\u3000with spaces — and emoji 🚀👍🏽"},
        {"role": "assistant", "content": "مرحبا بالعالم שלום 🇩🇪 e\u0301"},
    ],
    "whitespace_ends": [
        {"role": "system", "content": "  leading spaces"},
        {"role": "user", "content": "trailing spaces and newline  \n"},
        {"role": "assistant", "content": "\n\nnewlines on both ends\n "},
        {"role": "user", "content": "\t tab \r\n crlf \r"},
        {"role": "assistant", "content": "  "},
    ],
    "empty_content": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "now something"},
    ],
    "special_looking": [
        {"role": "user", "content": "<|user|>\n{{ not a template }} {% if %} <|im_end|>"},
        {"role": "assistant", "content": "<|endoftext|><|end|></s>"},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I start."},
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "done"},
    ],
    "ends_with_user": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ],
}

# (bos, eos) used with each built-in, as the models ship them.
BUILTIN_TOKENS = {
    "tulu": ("<|endoftext|>", "<|endoftext|>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "chatml": ("<s>", "</s>"),
}

# Small templates, one construct or model style each.
CONSTRUCTS = {
    "ws_trim_lstrip": "A\n  {% for m in messages %}\n    [{{ m.role }}]\n  {% endfor %}\nB\n",
    "ws_dash": "x  {%- for m in messages -%}  <{{- m['role'] -}}>  {%- endfor -%}  y",
    "ws_plus": "x\n  {%+ if true %}  a  {% endif +%}\n  b  {#+ c +#}  d",
    "ws_var_no_lstrip": "  {{ messages|length }}\n  {% if true %}b{% endif %}\n",
    "ws_comment": "a\n  {# comment #}\nb {#- c -#}  c\n{# multi\nline #}\nd",
    "crlf_source": "line1\r\n{% for m in messages %}\r\n{{ m.content }}\r\n{% endfor %}\r\nend\r\n",
    "trailing_newlines": "{{ messages[0].content }}\n\n",
    "unicode_ws_lstrip": "a\n\u3000\u00a0{% if true %}b{% endif %}",
    "set_scope": "{% set x = 1 %}{% for m in messages %}{{ x }}{% set x = x + 1 %}{{ x }};"
                 "{% endfor %}{{ x }}{% if true %}{% set y = 5 %}{% endif %}{{ y }}",
    "namespace": "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                 "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }}:{{ ns.s }}",
    "loop_vars": "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/"
                 "{{ loop.revindex0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}/"
                 "{{ loop.previtem.role if loop.previtem is defined else '-' }}/"
                 "{{ loop.nextitem['role'] if not loop.last else '-' }}\n{% endfor %}",
    "loop_else_filter": "{% for m in messages if m.role == 'assistant' %}[{{ loop.index }}:{{ m.content }}]"
                        "{% else %}no assistant{% endfor %}",
    "break_continue": "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                      "{{ m.role }},{% if loop.index >= 3 %}{% break %}{% endif %}{% endfor %}",
    "filters": "{% for m in messages %}{{ m.content|trim }}|{{ m.content|length }}|"
               "{{ m.role|upper }}|{{ m.role|lower }}|{{ m.missing|default('dflt') }}|"
               "{{ ''|default('e', true) }}|{{ m.content|replace(' ', '_') }}|{{ [1, 2, 3]|join('-') }}|"
               "{{ m.content|tojson }}|{{ {'a': [1, none, true], 'b': m.role}|tojson }}|"
               "{{ (m.content ~ 'x')|first }}{{ 'abc'|last }}|{{ 42|string }}\n{% endfor %}",
    "tests": "{% for m in messages %}{{ m.content is string }}{{ m.tool_calls is defined }}"
             "{{ m.tool_calls is undefined }}{{ none is none }}{{ loop.index is even }}"
             "{{ loop.index is odd }}{{ loop.index is divisibleby(3) }}{{ m is mapping }}"
             "{{ messages is sequence }}{{ m.role is eq('user') }}{{ 3 is number }}"
             "{{ true is boolean }}{{ m.content is not none }};{% endfor %}",
    "operators": "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 3 * 'ab' }} {{ 1 + 2 * 3 }}"
                 " {{ (1 + 2) * 3 }} {{ 'a' ~ 1 ~ none ~ true }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"
                 " {{ 'ell' in 'hello' }} {{ 'x' not in ['a', 'x'] }} {{ 'k' in {'k': 1} }}"
                 " {{ not 0 and 'yes' }} {{ '' or 'fallback' }} {{ 1 == true }} {{ [1, 2] == [1, 2] }}",
    "slices": "{{ messages[1:]|length }} {{ messages[-1].role }} {{ messages[0]['content'][1:4] }}"
              " {{ 'héllo wörld'[::-1] }} {{ 'abcdef'[1:5:2] }} {{ messages[::2]|length }}"
              " {{ messages[10] is defined }} {{ 'abc'[-5:2] }}",
    "strings": "{{ 'tab\\there' }}|{{ \"dq 'x' \\\"y\\\"\" }}|{{ 'uni \\u00e9\\U0001F600 \\x41' }}|"
               "{{ 'oct \\101' }}|{{ 'unknown \\q' }}|{{ 'adj' 'acent' }}|{{ 'multi\nline' }}",
    "methods": "{% for m in messages %}{{ m.content.strip() }}|{{ m.content.lstrip() }}|"
               "{{ m.content.rstrip() }}|{{ m.role.upper() }}|{{ m.content.startswith('W') }}|"
               "{{ m.content.endswith('?') }}|{{ m.content.replace('a', 'A', 1) }}|"
               "{{ m.content.split()|length }}|{{ m.content.split('a')|join('+') }}|"
               "{{ m.get('role') }}|{{ m.get('nope', 'd') }}|{{ m.get('nope') }}\n{% endfor %}",
    "condexpr": "{% for m in messages %}{{ 'S' if m.role == 'system' else ('U' if m.role == 'user' else 'A') }}"
                "{{ '!' if loop.last }}{% endfor %}",
    "range_dict": "{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}|"
                  "{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}|{% for c in 'héy' %}[{{ c }}]{% endfor %}",
    "undefined": "[{{ nothing }}][{{ nothing ~ 'x' }}][{{ nothing|length }}][{{ nothing is defined }}]"
                 "[{{ messages[0].nope }}][{{ tools }}][{{ documents is none }}][{{ bos_token is defined }}]",
    "raise_exception": "{% for m in messages %}{% if m.role == 'assistant' %}"
                       "{{ raise_exception('assistant messages are not allowed: ' + m.content) }}"
                       "{% endif %}{{ m.content }}{% endfor %}",
    "generation_block": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
                        "{{ m.content + eos_token }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}"
                        "{% endfor %}",
    "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
              "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
              "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
              "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
              "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
              "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
              "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
              "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
              "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
              "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
              "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
              "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
              "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "mistral": "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
               "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
               "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
               "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
               "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
               "    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
               "        {%- if loop.first and system_message is defined %}\n"
               "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
               "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
               "        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n"
               "        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
               "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
               "    {%- endif %}\n{%- endfor %}\n",
    "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
             "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
             "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
             "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
             "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}"
              "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
              "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
}
CONSTRUCT_CONVERSATIONS = ["sys_user_asst", "no_system_2turns", "whitespace_ends", "unicode"]

FOLDER_TEMPLATE_CONFIG = (
    "{% for m in messages %}{{ bos_token if loop.first }}<{{ m.role }}>{{ m.content }}"
    "{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}")
FOLDER_TEMPLATE_JINJA = (
    "{%- for message in messages %}\n"
    "    {{- '### ' + message.role|upper + ':\\n' + message.content|trim + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '### ASSISTANT:\\n' }}\n"
    "{%- endif %}\n"
    "{{- eos_token if not add_generation_prompt }}\n")


def tiny_tokenizer(bos, eos):
    vocab = {"[UNK]": 0, bos: 1, eos: 2, "hello": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    extra = set(hf.special_tokens_map) - {"bos_token", "eos_token"}
    if extra:
        oc.fail(f"the tiny tokenizer defines special tokens beyond bos/eos: {sorted(extra)}")
    return hf


def hf_render(tok, messages, template, gen):
    """transformers' rendering, or ("error", message) when it raises."""
    try:
        kwargs = {} if template is None else {"chat_template": template}
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **kwargs)
    except Exception as e:  # noqa: BLE001 - a raise_exception is a TemplateError
        return ("error", f"{type(e).__name__}: {e}")


def run_cemoe(chat_render, work, cases):
    req = os.path.join(work, "request.json")
    res = os.path.join(work, "result.json")
    with open(req, "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False)
    p = subprocess.run([chat_render, req, res], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    if p.returncode != 0:
        oc.fail(f"chat_render exited {p.returncode}:\n{p.stdout[-4000:]}")
    with open(res, encoding="utf-8") as f:
        results = json.load(f)["results"]
    if len(results) != len(cases):
        oc.fail(f"chat_render returned {len(results)} results for {len(cases)} cases")
    return results


def first_difference(a, b):
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return f"first difference at character {n}: cemoe {a[n:n + 40]!r} vs transformers {b[n:n + 40]!r}"


def compare(report, name, want, got):
    if isinstance(want, tuple):
        ok = "error" in got
        report.add(name, ok, expected="error", cemoe=("error" if ok else "rendered " + repr(got.get("text", ""))[:80]))
        if ok:
            print(f"    transformers: {want[1][:160]}\n    cemoe:        {got['error'][:300]}", flush=True)
        return
    if "error" in got:
        report.add(name, False, error=got["error"][:400])
        return
    ok = got["text"] == want
    fields = {"chars": len(want)}
    if not ok:
        fields["diff"] = first_difference(got["text"], want)
    report.add(name, ok, **fields)


def builtin_sources(chat_render, work):
    """The built-in template sources as cemoe embeds them (from the cache key, which holds the exact
    source), so that transformers renders the very same text."""
    cases = [{"template": {"builtin": n, "bos_token": "B", "eos_token": "E"},
              "messages": [{"role": "user", "content": "x"}]} for n in BUILTIN_TOKENS]
    out = {}
    for name, r in zip(BUILTIN_TOKENS, run_cemoe(chat_render, work, cases)):
        key = r["cache_key"]
        head = "chat_template source "
        size, rest = key[len(head):].split(":", 1)
        out[name] = rest[:int(size)]
    return out


def case_builtins(chat_render, work, report, sources):
    cases, wants, names = [], [], []
    for name, (bos, eos) in BUILTIN_TOKENS.items():
        tok = tiny_tokenizer(bos, eos)
        for conv_name, conv in CONVERSATIONS.items():
            for gen in (False, True):
                cases.append({"template": {"builtin": name, "bos_token": bos, "eos_token": eos},
                              "messages": conv, "add_generation_prompt": gen, "segments": not gen})
                wants.append(hf_render(tok, conv, sources[name], gen))
                names.append(f"{name}/{conv_name}/gen={int(gen)}")
    results = run_cemoe(chat_render, work, cases)
    for name, want, got, case in zip(names, wants, results, cases):
        compare(report, name, want, got)
        if not case["add_generation_prompt"] and "segments" in got:
            check_segments(report, name.rsplit("/", 1)[0], case, got["segments"], want,
                           tiny_tokenizer(case["template"]["bos_token"], case["template"]["eos_token"]),
                           sources[case["template"]["builtin"]])
    return len(cases)


def check_segments(report, name, case, segments, whole, tok, source):
    """The open-instruct rule, computed with transformers, against cemoe's RenderForTraining."""
    msgs = case["messages"]
    eos = case["template"]["eos_token"]
    joined = "".join(text for text, _ in segments)
    if joined != whole:
        report.add(f"training/{name}", False, diff=first_difference(joined, whole))
        return
    expected = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = hf_render(tok, msgs[:i], source, True) if i > 0 else render_empty(source, case["template"])
        turn = hf_render(tok, msgs[:i + 1], source, False)
        text = turn[len(prompt):]
        if not whole.startswith(text, len(prompt)) and text.endswith(eos):
            text = text[:-len(eos)]
        if text:
            expected.append(text)
    got = [text for text, assistant in segments if assistant]
    ok = got == expected
    report.add(f"training/{name}", ok, assistant_segments=len(got),
               **({} if ok else {"cemoe": repr(got)[:200], "expected": repr(expected)[:200]}))


def render_empty(source, template):
    """render(messages=[], add_generation_prompt=True): transformers refuses an empty conversation,
    so the template is rendered with the same Jinja environment transformers builds."""
    from transformers.utils.chat_template_utils import _compile_jinja_template
    return _compile_jinja_template(source).render(
        messages=[], tools=None, documents=None, add_generation_prompt=True,
        bos_token=template["bos_token"], eos_token=template["eos_token"])


def case_constructs(chat_render, work, report):
    bos, eos = "<s>", "</s>"
    tok = tiny_tokenizer(bos, eos)
    cases, wants, names = [], [], []
    for name, source in CONSTRUCTS.items():
        for conv_name in CONSTRUCT_CONVERSATIONS:
            for gen in (False, True):
                conv = CONVERSATIONS[conv_name]
                cases.append({"template": {"source": source, "where": name, "bos_token": bos, "eos_token": eos},
                              "messages": conv, "add_generation_prompt": gen})
                wants.append(hf_render(tok, conv, source, gen))
                names.append(f"construct/{name}/{conv_name}/gen={int(gen)}")
    results = run_cemoe(chat_render, work, cases)
    for name, want, got in zip(names, wants, results):
        compare(report, name, want, got)
    return len(cases)


def write_folder(path, config_edit, jinja=None):
    os.makedirs(path, exist_ok=True)
    tok = tiny_tokenizer("<|bos|>", "<|eos|>")
    tok.save_pretrained(path)
    for leftover in ("chat_template.jinja",):
        if os.path.exists(os.path.join(path, leftover)):
            os.remove(os.path.join(path, leftover))
    cfg_path = os.path.join(path, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    config_edit(cfg)
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
    if jinja is not None:
        with open(os.path.join(path, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(jinja)


def case_folders(chat_render, work, report):
    def config_string(cfg):
        cfg["chat_template"] = FOLDER_TEMPLATE_CONFIG
        cfg["bos_token"] = {"__type": "AddedToken", "content": "<|bos|>", "lstrip": False, "normalized": False,
                            "rstrip": False, "single_word": False, "special": True}
        cfg["eos_token"] = "<|eos|>"

    def config_list(cfg):
        cfg["chat_template"] = [{"name": "tool_use", "template": "TOOLS {{ messages|length }}"},
                                {"name": "default", "template": FOLDER_TEMPLATE_CONFIG + "[list]"}]

    folders = {
        "config_string": (config_string, None),
        "config_and_jinja": (config_string, FOLDER_TEMPLATE_JINJA),
        "jinja_only": (lambda cfg: cfg.pop("chat_template", None), FOLDER_TEMPLATE_JINJA),
        "config_list": (config_list, None),
    }
    cases, wants, names = [], [], []
    for fname, (edit, jinja) in folders.items():
        path = os.path.join(work, "folders", fname)
        write_folder(path, edit, jinja)
        tok = PreTrainedTokenizerFast.from_pretrained(path)
        for conv_name in ("sys_user_asst", "no_system_2turns", "whitespace_ends", "unicode", "empty_content"):
            for gen in (False, True):
                conv = CONVERSATIONS[conv_name]
                cases.append({"template": {"folder": path}, "messages": conv, "add_generation_prompt": gen})
                wants.append(hf_render(tok, conv, None, gen))
                names.append(f"folder/{fname}/{conv_name}/gen={int(gen)}")
    results = run_cemoe(chat_render, work, cases)
    for name, want, got in zip(names, wants, results):
        compare(report, name, want, got)
    return len(cases)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chat-render", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    report = oc.start("chat_template", args.work, args.chat_render)
    sources = builtin_sources(args.chat_render, args.work)
    done = oc.run_cases(report, [
        ("builtins", lambda: case_builtins(args.chat_render, args.work, report, sources)),
        ("folders", lambda: case_folders(args.chat_render, args.work, report)),
        ("constructs", lambda: case_constructs(args.chat_render, args.work, report)),
    ], args.only)
    print(f"chat template oracle: {sum(done.values())} renderings compared", flush=True)
    return report.finish()


if __name__ == "__main__":
    oc.main_guard(main)
