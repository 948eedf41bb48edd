// jinja_test.cc: the Jinja interpreter (trainer/data/jinja_*.h) on small hand-written templates,
// one construct each, with the output worked out by hand from Jinja 3.1's rules under Hugging
// Face's settings (trim_blocks, lstrip_blocks); then the errors (unsupported constructs at load
// time with the line, runtime errors, raise_exception) and the limits on hostile templates.
// tests/oracle/chat_template_oracle.py runs the same kinds of templates through transformers.
#include <gtest/gtest.h>

#include <chrono>

#include "model/check.h"
#include "trainer/data/chat_template.h"

namespace cemoe {
namespace {

const std::vector<ChatMessage> kMsgs = {{"system", "  sys  "}, {"user", "Hi"}, {"assistant", "Yo"}};

std::string R(const std::string& source, const std::vector<ChatMessage>& msgs = kMsgs,
              bool gen = false) {
  return ChatTemplate::FromSource(source, "test", "<s>", "</s>").Render(msgs, gen);
}

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string LoadError(const std::string& source) {
  return ErrorOf([&] { ChatTemplate::FromSource(source, "tmpl.jinja", "", ""); });
}

std::string RenderError(const std::string& source) {
  return ErrorOf([&] { R(source); });
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST(JinjaTest, TextAndPrint) {
  EXPECT_EQ(R("plain"), "plain");
  EXPECT_EQ(R("{{ bos_token }}{{ messages[1]['content'] }}{{ messages[1].role }}{{ eos_token }}"),
            "<s>Hiuser</s>");
  EXPECT_EQ(R("{{ none }} {{ true }} {{ False }} {{ 42 }} {{ -3 }}"), "None True False 42 -3");
  // Trailing newline of the source: one is dropped (keep_trailing_newline=False).
  EXPECT_EQ(R("a\n\n"), "a\n");
  EXPECT_EQ(R("a\r\nb\rc\r\n"), "a\nb\nc");
}

// trim_blocks drops the newline after %}, lstrip_blocks the indentation before {%; neither
// applies to {{ }}.
TEST(JinjaTest, TrimAndLstripBlocks) {
  EXPECT_EQ(R("A\n  {% for m in messages %}\n    [{{ m.role }}]\n  {% endfor %}\nB"),
            "A\n    [system]\n    [user]\n    [assistant]\nB");
  EXPECT_EQ(R("  {{ 1 }}\n  {% if true %}x{% endif %}\n"), "  1\nx");
  EXPECT_EQ(R("a\n  {# comment #}\nb"), "a\nb");
  // "+" turns the stripping off on that side.
  EXPECT_EQ(R("a\n  {%+ if true %}x{% endif +%}\nb"), "a\n  x\nb");
}

TEST(JinjaTest, DashWhitespaceControl) {
  EXPECT_EQ(R("x  \n {%- if true -%} \n y \n {%- endif %}"), "xy");
  EXPECT_EQ(R("a  {{- 'b' -}}  \n c"), "abc");
  EXPECT_EQ(R("a {#- note -#} b"), "ab");
  // Python's whitespace includes U+3000 and U+00A0.
  EXPECT_EQ(R("a\u3000\u00a0{{- 'b' }}"), "ab");
}

TEST(JinjaTest, IfElifElse) {
  const std::string t =
      "{% for m in messages %}{% if m.role == 'system' %}S{% elif m.role == 'user' %}U"
      "{% else %}A{% endif %}{% endfor %}";
  EXPECT_EQ(R(t), "SUA");
  EXPECT_EQ(R("{% if messages|length > 2 and not (messages[0].role != 'system') %}yes{% endif %}"),
            "yes");
}

TEST(JinjaTest, ForLoopVariables) {
  EXPECT_EQ(R("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.length }}"
              "{{ loop.first }}{{ loop.last }}{{ loop.revindex }},{% endfor %}"),
            "103TrueFalse3,213FalseFalse2,323FalseTrue1,");
  EXPECT_EQ(R("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}"
              "{{ m.content }}{% endfor %}"),
            "1/2Hi2/2Yo");
  EXPECT_EQ(R("{% for m in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{{ m.role }}"
              "{% break %}{% endfor %}"),
            "user");
  EXPECT_EQ(R("{% for c in 'héy' %}[{{ c }}]{% endfor %}"), "[h][é][y]");
  EXPECT_EQ(R("{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}"), "135");
}

// A set inside a loop lives for one iteration (Jinja scoping); a namespace carries state out.
TEST(JinjaTest, SetScopingAndNamespace) {
  EXPECT_EQ(R("{% set x = 1 %}{% for m in messages %}{{ x }}{% set x = x + 1 %}{{ x }};"
              "{% endfor %}{{ x }}"),
            "12;12;12;1");
  EXPECT_EQ(R("{% if true %}{% set y = 'kept' %}{% endif %}{{ y }}"), "kept");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
              "{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(R("{% set loop_messages = messages[1:] %}{{ loop_messages|length }}"
              "{{ loop_messages[0].role }}"),
            "2user");
}

TEST(JinjaTest, StringLiteralsAndConcatenation) {
  EXPECT_EQ(R(R"({{ 'a\nb' }}|{{ "q\"q" }}|{{ 'it\'s' }}|{{ '\x41\u00e9\101' }}|{{ '\q' }})"),
            "a\nb|q\"q|it's|AéA|\\q");  // NOLINT
  EXPECT_EQ(R("{{ 'ab' 'cd' }}"), "abcd");
  EXPECT_EQ(R("{{ 'a' + 'b' ~ 1 ~ none }}"), "ab1None");
}

TEST(JinjaTest, ComparisonsAndMembership) {
  EXPECT_EQ(R("{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 'a' < 'b' }}{{ 1 == true }}{{ 'x' != 'x' }}"),
            "TrueFalseTrueTrueFalse");
  EXPECT_EQ(R("{{ 'ell' in 'hello' }}{{ 'z' not in ['a'] }}{{ 'role' in messages[0] }}"),
            "TrueTrueTrue");
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 3 ** 2 }} {{ 2 * 'ab' }}"),
            "3 -4 2 64 abab");
  EXPECT_EQ(
      R("{{ '' or 'fallback' }}|{{ 0 and 'x' }}|{{ 'A' if false else 'B' }}|{{ 'C' if false }}|"),
      "fallback|0|B||");
}

TEST(JinjaTest, Filters) {
  EXPECT_EQ(
      R("[{{ messages[0].content|trim }}]{{ 'héllo'|length }}{{ 'Ab'|upper }}{{ 'Ab'|lower }}"),
      "[sys]5ABab");
  EXPECT_EQ(R("{{ missing|default('d') }}{{ ''|default('e') }}{{ ''|default('f', true) }}"), "df");
  EXPECT_EQ(
      R("{{ [1, 2]|join(', ') }}|{{ 'abc'|first }}{{ 'abc'|last }}|{{ 'a-b'|replace('-', '+') }}"),
      "1, 2|ac|a+b");
  EXPECT_EQ(R("{{ {'k': ['v', 1, none, true], 'q': 'a\"\\n'}|tojson }}"),
            R"({"k": ["v", 1, null, true], "q": "a\"\n"})");
}

TEST(JinjaTest, TestsAndUndefined) {
  EXPECT_EQ(R("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}"
              "{{ 3 is odd }}{{ 4 is divisibleby(2) }}{{ messages[0] is mapping }}"
              "{{ messages[0].tool_calls is not defined }}"),
            "FalseTrueTrueTrueTrueTrueTrueTrue");
  // Undefined prints nothing, has length 0, equals only Undefined; tools / documents are none.
  EXPECT_EQ(
      R("[{{ x }}][{{ x|length }}][{{ x == y }}][{{ x == none }}][{{ tools }}][{{ messages[9] }}]"),
      "[][0][True][False][None][]");
}

TEST(JinjaTest, SlicesAndMethods) {
  EXPECT_EQ(R("{{ 'héllo'[1:3] }}|{{ 'abc'[::-1] }}|{{ 'abc'[-1] }}|{{ messages[-2:]|length }}"),
            "él|cba|c|2");
  EXPECT_EQ(R("{{ messages[0].content.strip() }}|{{ 'a,b,,c'.split(',')|length }}|"
              "{{ ' x  y '.split()|join('+') }}|{{ 'abc'.startswith('ab') }}|"
              "{{ messages[0].get('nope', 'd') }}{{ messages[0].get('nope') }}"),
            "sys|4|x+y|True|dNone");
}

TEST(JinjaTest, RaiseExceptionNamesTemplateAndMessage) {
  const std::string e = RenderError(
      "{% for m in messages %}\n{% if m.role == 'assistant' %}\n"
      "{{ raise_exception('No assistant: ' + m.content) }}{% endif %}{% endfor %}");
  EXPECT_CONTAINS(e, "chat template test: line 3: raise_exception: No assistant: Yo");
}

TEST(JinjaTest, UnsupportedConstructsFailAtLoadWithTheLine) {
  EXPECT_CONTAINS(LoadError("a\n{% macro m() %}{% endmacro %}"),
                  "chat template tmpl.jinja: line 2: unsupported construct '{% macro %}'");
  EXPECT_CONTAINS(LoadError("{% include 'x' %}"), "unsupported construct '{% include %}'");
  EXPECT_CONTAINS(LoadError("\n\n{{ x|selectattr('a') }}"),
                  "line 3: unsupported construct: the filter 'selectattr'");
  EXPECT_CONTAINS(LoadError("{% if x is sameas y %}{% endif %}"), "the test 'sameas'");
  EXPECT_CONTAINS(LoadError("{{ 1.5 }}"), "the float literal 1.5");
  EXPECT_CONTAINS(LoadError("{{ 3 / 2 }}"), "unsupported construct: '/'");
  EXPECT_CONTAINS(LoadError("{{ strftime_now('%Y') }}"), "calling 'strftime_now'");
  EXPECT_CONTAINS(LoadError("{{ pad_token }}"), "uses 'pad_token', which Hugging Face defines");
  EXPECT_CONTAINS(LoadError("{% for a, b in x %}{% endfor %}"), "unpacking in a for loop");
  EXPECT_CONTAINS(LoadError("{% set x %}y{% endset %}"), "a block set");
  EXPECT_CONTAINS(LoadError("{% raw %}x{% endraw %}"), "'{% raw %}'");
  EXPECT_CONTAINS(LoadError("{{ 'x'.title() }}"), "the method call .title()");
  EXPECT_CONTAINS(LoadError("{% for m in messages %}{{ loop.cycle }}{% endfor %}"), "loop.cycle");
  EXPECT_CONTAINS(LoadError("{{ (1, 2) }}"), "a tuple");
  EXPECT_CONTAINS(LoadError("{% break %}"), "outside a for loop");
  EXPECT_CONTAINS(LoadError("{% if true %}x"), "the '{% if %}' opened here has no 'elif'");
  EXPECT_CONTAINS(LoadError("{{ 'x' }"), "unexpected '}'");
  EXPECT_CONTAINS(LoadError("x {# open"), "missing end of comment");
  EXPECT_CONTAINS(LoadError("{% frobnicate %}"), "unknown tag '{% frobnicate %}'");
  EXPECT_CONTAINS(LoadError("{{ 'a' 'b\\N{DASH}' }}"), "\\N{...}");
}

TEST(JinjaTest, RuntimeErrorsNameTheLine) {
  EXPECT_CONTAINS(RenderError("\n{{ 1 + 'a' }}"),
                  "chat template test: line 2: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_CONTAINS(RenderError("{{ x.y }}"), "'x' is undefined");
  EXPECT_CONTAINS(RenderError("{{ x + 1 }}"), "'x' is undefined");
  EXPECT_CONTAINS(RenderError("{{ messages }}"), "printing a list is not supported");
  EXPECT_CONTAINS(RenderError("{{ 'é'|upper }}"), "upper of non-ASCII text");
  EXPECT_CONTAINS(RenderError("{{ 1 // 0 }}"), "division or modulo by zero");
  EXPECT_CONTAINS(RenderError("{{ 9223372036854775807 + 1 }}"), "integer overflow");
  EXPECT_CONTAINS(RenderError("{% set s = 'x' %}{% set s.a = 1 %}"), "non-namespace object 's'");
}

TEST(JinjaTest, HostileTemplatesAreBounded) {
  EXPECT_CONTAINS(LoadError("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}"),
                  "nesting deeper than");
  std::string deep;
  for (int k = 0; k < 200; ++k) deep += "{% if true %}";
  EXPECT_CONTAINS(LoadError(deep), "nesting deeper than");
  EXPECT_CONTAINS(RenderError("{% for i in range(1000000) %}{% endfor %}"), "Range too big");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_CONTAINS(RenderError("{% for a in range(100000) %}{% for b in range(100000) %}"
                              "{% endfor %}{% endfor %}"),
                  "more than 1000000 loop iterations");
  EXPECT_CONTAINS(RenderError("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(100) %}"
                              "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
                  "exceeds the output limit");
  EXPECT_CONTAINS(RenderError("{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{{ s }}"
                              "{% endfor %}"),
                  "the rendering exceeds");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
}

}  // namespace
}  // namespace cemoe
