#!/usr/bin/env python3
"""Golden chat-template renderings from jinja2, set up the way HF transformers'
apply_chat_template sets it up.

transformers compiles a chat template in an ImmutableSandboxedEnvironment with
trim_blocks=True, lstrip_blocks=True and the loopcontrols extension (break/continue),
replaces the tojson filter with plain json.dumps (no HTML escaping, keys unsorted,
ensure_ascii=False), adds the globals raise_exception (raises TemplateError) and
strftime_now, and renders with messages, tools=None, documents=None,
add_generation_prompt and the special tokens (bos_token, eos_token). This script does
the same with jinja2 alone (transformers is not a dependency).

Writes tests/data/chat/:
  templates/<name>.jinja  the model templates, byte for byte (smollm2 is read from the
                          default model's GGUF, key tokenizer.chat_template)
  cases.json              {"jinja2_version", "cases": [...]}; each case has
                          name, template (a templates/ stem) or template_text, messages,
                          add_generation_prompt, bos_token, eos_token, and either
                          "expected" (the rendering) or "error" (the exception class) and
                          "error_message" (str of the exception)

Run through tests/reference/regenerate.sh chat. Deterministic.
"""
import datetime
import json
import os

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

import gguf

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "chat")


class RaisedByTemplate(TemplateError):
    """What raise_exception throws; a subclass only so cases.json can tell it apart
    from syntax and runtime errors."""


def raise_exception(message):
    raise RaisedByTemplate(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class GenerationTag(jinja2.ext.Extension):
    """transformers' {% generation %}...{% endgeneration %} (its AssistantTracker): marks
    the assistant's tokens for training masks and renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now=None):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, GenerationTag])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    # strftime_now only where a case fixes the clock (`now`, seconds since the epoch,
    # read as UTC): elsewhere its output would depend on the day the script ran.
    if now is not None:
        env.globals["strftime_now"] = lambda fmt: datetime.datetime.fromtimestamp(
            now, datetime.timezone.utc).strftime(fmt)
    return env


def read_gguf_template(path):
    reader = gguf.GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


# ---------------------------------------------------------------------------------
# Model templates, as the models ship them (Llama 3.1 trimmed of its tool-calling
# branches). Raw strings: the escapes inside are Jinja's, not Python's.

CHATML = (r"""{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + """
          r"""message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"""
          r"""{{ '<|im_start|>assistant\n' }}{% endif %}""")

LLAMA2 = (r"""{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"""
          r"""{% set system_message = messages[0]['content'] %}{% else %}"""
          r"""{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"""
          r"""{% for message in loop_messages %}{% if (message['role'] == 'user') != """
          r"""(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate """
          r"""user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and """
          r"""system_message != false %}{% set content = '<<SYS>>\n' + system_message + """
          r"""'\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = """
          r"""message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + """
          r"""'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"""
          r"""{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}""")

LLAMA3 = (r"""{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = """
          r"""'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ """
          r"""message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content """
          r"""= bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if """
          r"""add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"""
          r"""{% endif %}""")

LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable and message.content is not string %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

MISTRAL_V1 = (r"""{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') """
              r"""!= (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must """
              r"""alternate user/assistant/user/assistant/...') }}{% endif %}{% if """
              r"""message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"""
              r"""{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"""
              r"""{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"""
              r"""{% endif %}{% endfor %}""")

MISTRAL_V3 = r"""{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

GEMMA = (r"""{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System """
         r"""role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] """
         r"""== 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must """
         r"""alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == """
         r"""'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"""
         r"""{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + """
         r"""'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"""
         r"""{{'<start_of_turn>model\n'}}{% endif %}""")

PHI3 = (r"""{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + """
        r"""message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"""
        r"""{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == """
        r"""'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"""
        r"""{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}"""
        r"""{{ eos_token }}{% endif %}""")

QWEN2 = (r"""{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"""
         r"""{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"""
         r"""{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"""
         r"""{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}""")

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# DeepSeek-R1-style: namespace() state, split() on the reasoning block, fullwidth
# characters in the special tokens.
DEEPSEEK_R1 = (r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = """
               r"""false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, """
               r"""is_output_first=true, system_prompt='') %}{%- for message in messages %}"""
               r"""{%- if message['role'] == 'system' %}{% set ns.system_prompt = """
               r"""message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}"""
               r"""{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == """
               r"""'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"""
               r"""{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not """
               r"""none %}{% set content = message['content'] %}{% if '</think>' in content %}"""
               r"""{% set content = content.split('</think>')[-1] %}{% endif %}"""
               r"""{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}"""
               r"""{%- endfor -%}{% if add_generation_prompt and not ns.is_tool %}"""
               r"""{{'<｜Assistant｜><think>\n'}}{% endif %}""")

# SmolLM3-3B's template (HuggingFaceTB/SmolLM3-3B, chat_template.jinja): reasoning modes
# switched by /think and /no_think in the system prompt or enable_thinking, today's date
# from strftime_now, namespace() accumulators, string methods, {% generation %}.
SMOLLM3 = r'''{# ───── defaults ───── #}
{%- if enable_thinking is not defined -%}
{%- set enable_thinking = true -%}
{%- endif -%}

{# ───── reasoning mode ───── #}
{%- if enable_thinking -%}
  {%- set reasoning_mode = "/think" -%}
{%- else -%}
  {%- set reasoning_mode = "/no_think" -%}
{%- endif -%}

{# ───── header (system message) ───── #}
{{- "<|im_start|>system\n" -}}

{%- if messages[0].role == "system" -%}
  {%- set system_message = messages[0].content -%}
  {%- if "/no_think" in system_message -%}
    {%- set reasoning_mode = "/no_think" -%}
  {%- elif "/think" in system_message -%}
    {%- set reasoning_mode = "/think" -%}
  {%- endif -%}
  {%- set custom_instructions = system_message.replace("/no_think", "").replace("/think", "").rstrip() -%}
{%- endif -%}

{%- if "/system_override" in system_message -%}
  {{- custom_instructions.replace("/system_override", "").rstrip() -}}
  {{- "<|im_end|>\n" -}}
{%- else -%}
  {{- "## Metadata\n\n" -}}
  {{- "Knowledge Cutoff Date: June 2025\n" -}}
  {%- set today = strftime_now("%d %B %Y") -%}
  {{- "Today Date: " ~ today ~ "\n" -}}
  {{- "Reasoning Mode: " + reasoning_mode + "\n\n" -}}
  
  {{- "## Custom Instructions\n\n" -}}
  {%- if custom_instructions -%}
    {{- custom_instructions + "\n\n" -}}
  {%- elif reasoning_mode == "/think" -%}
    {{- "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves thoroughly exploring questions through a systematic thinking process before providing the final precise and accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracking, and iteration to develop well-considered thinking process. Please structure your response into two main sections: Thought and Solution using the specified format: <think> Thought section </think> Solution section. In the Thought section, detail your reasoning process in steps. Each step should include detailed considerations such as analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting previous steps. In the Solution section, based on various attempts, explorations, and reflections from the Thought section, systematically present the final solution that you deem correct. The Solution section should be logical, accurate, and concise and detail necessary steps needed to reach the conclusion.\n\n" -}}
  {%- else -%}
    {{- "You are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n" -}}
  {%- endif -%}

  {%- if xml_tools or python_tools -%}
    {{- "### Tools\n\n" -}}
    {%- if xml_tools -%}
      {%- set ns = namespace(xml_tool_string="You may call one or more functions to assist with the user query.\nYou are provided with function signatures within <tools></tools> XML tags:\n\n<tools>\n") -%}
      {%- for tool in xml_tools[:] -%} {# The slicing makes sure that xml_tools is a list #}
        {%- set ns.xml_tool_string = ns.xml_tool_string ~ (tool | string) ~ "\n" -%}
      {%- endfor -%}
      {%- set xml_tool_string = ns.xml_tool_string + "</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>" -%}
      {{- xml_tool_string -}}
    {%- endif -%}
    {%- if python_tools -%}
      {%- set ns = namespace(python_tool_string="When you send a message containing Python code between '<code>' and '</code>' tags, it will be executed in a stateful Jupyter notebook environment, and you will then be given the output to continued reasoning in an agentic loop.\n\nYou can use the following tools in your python code like regular functions:\n<tools>\n") -%}
      {%- for tool in python_tools[:] -%} {# The slicing makes sure that python_tools is a list #}
        {%- set ns.python_tool_string = ns.python_tool_string ~ (tool | string) ~ "\n" -%}
      {%- endfor -%}
      {%- set python_tool_string = ns.python_tool_string + "</tools>\n\nThe state persists between code executions: so variables that you define in one step are still available thereafter." -%}
      {{- python_tool_string -}}
    {%- endif -%}
    {{- "\n\n" -}}
    {{- "<|im_end|>\n" -}}
  {%- endif -%}
{%- endif -%}
{# ───── main loop ───── #}
{%- for message in messages -%}
    {%- set content = message.content if message.content is string else "" -%}
    {%- if message.role == "user" -%}
        {{ "<|im_start|>" + message.role + "\n"  + content + "<|im_end|>\n" }}
    {%- elif message.role == "assistant" -%}
        {% generation %}
        {%- if reasoning_mode == "/think" -%}
            {{ "<|im_start|>assistant\n" + content.lstrip("\n") + "<|im_end|>\n" }}
        {%- else -%}
            {{ "<|im_start|>assistant\n" + "<think>\n\n</think>\n" + content.lstrip("\n") + "<|im_end|>\n" }}
        {%- endif -%}
        {% endgeneration %}
    {%- elif message.role == "tool" -%}
    {{ "<|im_start|>" + "user\n"  + content + "<|im_end|>\n" }}
    {%- endif -%}
{%- endfor -%}
{# ───── generation prompt ───── #}
{%- if add_generation_prompt -%}
    {%- if reasoning_mode == "/think" -%}
        {{ "<|im_start|>assistant\n" }}
    {%- else -%}
        {{ "<|im_start|>assistant\n" + "<think>\n\n</think>\n"  }}
    {%- endif -%}
{%- endif -%}
'''
# The clock its cases render with: 2026-01-15 UTC.
SMOLLM3_NOW = 1768435200

# name -> (template, bos_token, eos_token)
MODEL_TEMPLATES = {
    "chatml": (CHATML, "<s>", "</s>"),
    "llama2": (LLAMA2, "<s>", "</s>"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    "llama31": (LLAMA31, "<|begin_of_text|>", "<|eot_id|>"),
    "mistral_v1": (MISTRAL_V1, "<s>", "</s>"),
    "mistral_v3": (MISTRAL_V3, "<s>", "</s>"),
    "zephyr": (ZEPHYR, "<s>", "</s>"),
    "gemma": (GEMMA, "<bos>", "<eos>"),
    "phi3": (PHI3, "<s>", "<|endoftext|>"),
    "qwen2": (QWEN2, "", "<|im_end|>"),
    "qwen25": (QWEN25, "", "<|im_end|>"),
    "deepseek_r1": (DEEPSEEK_R1, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "smollm3": (SMOLLM3, "", "<|im_end|>"),
}
# Templates that read the clock, and the time their cases fix.
TEMPLATE_NOW = {"smollm3": SMOLLM3_NOW}


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [msg("user", "Hello!")],
    "system_user": [msg("system", "You are a terse assistant."), msg("user", "What is 2+2?")],
    "multi_turn": [msg("user", "Hi there"), msg("assistant", "Hello! How can I help?"),
                   msg("user", "Tell me a joke.")],
    "system_multi_turn": [msg("system", "Be brief."), msg("user", "Name a color."),
                          msg("assistant", "Blue."), msg("user", "Another one?")],
    "ends_with_assistant": [msg("user", "Say hi."), msg("assistant", "Hi!")],
    "tricky_content": [
        msg("user", "Line one\nLine two\n  indented {{ not_a_tag }} {% neither %} {# nor #}"),
        msg("assistant", "  Unicode: héllo wörld — 你好 🙂\t\n"),
        msg("user", "\u00a0braces {} [] '\"quotes\"' and a backslash \\n\n\n"),
    ],
    "empty_content": [msg("user", "")],
    "reasoning": [msg("user", "2+2?"),
                  msg("assistant", "<think>\nadding\n</think>\n\nIt is 4."),
                  msg("user", "And 3+3?")],
    "tool_turn": [msg("user", "Weather in Paris?"), msg("assistant", "Let me check."),
                  msg("tool", "{\"temp\": 21}"), msg("tool", "{\"sky\": \"clear\"}"),
                  msg("user", "Thanks")],
    "bad_alternation": [msg("user", "One"), msg("user", "Two")],
    # SmolLM3's switches inside the system prompt (plain text to every other template).
    "system_no_think": [msg("system", "Answer in one word. /no_think  "), msg("user", "Sky color?"),
                        msg("assistant", "\nBlue."), msg("user", "Grass?")],
    "system_override": [msg("system", "Raw system text /system_override"), msg("user", "Hi")],
}

# ---------------------------------------------------------------------------------
# Feature templates: one construct each, rendered over FEATURE_MESSAGES, so a mismatch
# points at the construct rather than at a whole model template.

FEATURE_MESSAGES = [msg("system", "Sys prompt."), msg("user", "  Hello, World!  "),
                    msg("assistant", "Hi."), msg("user", "Ünïcode ✓ text")]

FEATURES = {
    # Literals and output formatting (Python str() of each type).
    "literals": "{{ 1 }}|{{ -2 }}|{{ 1.5 }}|{{ 1.0 }}|{{ 2.50 }}|{{ 1e3 }}|{{ 1_000 }}|{{ 'a' }}"
                "|{{ \"b\" }}|{{ true }}|{{ True }}|{{ false }}|{{ none }}|{{ None }}",
    "float_repr": "{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 123456789.125 }}|{{ 10 / 4 }}"
                  "|{{ 1 / 3 }}|{{ 2 ** -1 }}|{{ 1e300 * 1e10 }}|{{ -0.0 }}",
    "containers": "{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v', 'n': [1, 2]} }}|{{ [] }}"
                  "|{{ {} }}|{{ (1, 'b') }}|{{ (1,) }}|{{ ['it\\'s', \"q\\\"\"] }}",
    "string_escapes": r"{{ 'a\nb\tc\\d\'e' }}|{{ '\x41\u00e9\U0001F600' }}|{{ '\d\q' }}"
                      "|{{ 'x' 'y' \"z\" }}",
    # Arithmetic.
    "arithmetic": "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}"
                  "|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 2 ** 3 ** 2 }}|{{ 1 + 1.5 }}|{{ 7.5 // 2 }}"
                  "|{{ -7.5 % 2 }}|{{ 3 - -2 }}|{{ +3 }}|{{ 'ab' * 3 }}|{{ [1] * 2 }}"
                  "|{{ [1, 2] + [3] }}|{{ 'a' + 'b' }}|{{ true + 1 }}|{{ 6 / 3 }}",
    "concat": "{{ 'a' ~ 1 ~ none ~ true ~ undefined_name ~ 1.5 }}|{{ 'a' + 1 ~ 2 }}|{{ 1 ~ 2 * 3 }}",
    # Comparisons and logic.
    "compare": "{{ 1 < 2 }}|{{ 2 <= 1 }}|{{ 'a' < 'b' }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}"
               "|{{ [1, 2] == [1, 2] }}|{{ [1, 2] < [1, 3] }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}"
               "|{{ none == none }}|{{ true == 1 }}|{{ {'a': 1} == {'a': 1} }}|{{ 'é' > 'z' }}",
    "logic": "{{ true and false }}|{{ true or false }}|{{ not true }}|{{ 0 or 'x' }}"
             "|{{ '' and 'y' }}|{{ 'a' and 'b' }}|{{ none or [] }}|{{ not none }}"
             "|{{ not 1 == 2 }}|{{ 1 if true else 2 }}|{{ 1 if false else 2 }}"
             "|{{ 'z' if false }}|{{ [] or {} or 0 or 'last' }}",
    "membership": "{{ 'ell' in 'hello' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}"
                  "|{{ 'x' not in 'abc' }}|{{ 3 not in [1] }}|{{ 'role' in messages[0] }}"
                  "|{{ 'tool_calls' in messages[0] }}",
    # Variables, attributes, subscripts, slices.
    "access": "{{ messages[0]['role'] }}|{{ messages[0].content }}|{{ messages[-1].role }}"
              "|{{ messages | length }}|{{ messages[9] }}|{{ messages[0].missing }}"
              "|{{ messages[0]['missing'] }}|{{ 'abc'[1] }}|{{ 'héllo'[1] }}|{{ {'a': {'b': 'c'}}.a.b }}"
              "|{{ [[1, 2]][0][1] }}|{{ messages.0.role }}",
    "slices": "{{ [1, 2, 3, 4, 5][1:3] }}|{{ [1, 2, 3][::-1] }}|{{ [1, 2, 3][-2:] }}"
              "|{{ [1, 2, 3][:-1] }}|{{ 'hello'[1:] }}|{{ 'hello'[::2] }}|{{ 'héllo'[:2] }}"
              "|{{ [1, 2, 3][5:] }}|{{ [1, 2, 3, 4, 5, 6][4:1:-2] }}"
              "|{% for m in messages[1:] %}{{ m.role }},{% endfor %}",
    "undefined": "[{{ nope }}]|{{ nope is defined }}|{{ nope is undefined }}|{{ nope | length }}"
                 "|{{ nope | default('dflt') }}|{{ not nope }}|{{ nope == nope }}|{{ nope == 1 }}"
                 "|{% for x in nope %}never{% endfor %}|{{ 'a' in nope }}|{{ nope | trim }}"
                 "|{{ nope | join(',') }}|{{ nope is none }}|{{ tools is none }}",
    # Filters.
    "filters_string": "{{ '  pad  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'MiXed' | upper }}"
                      "|{{ 'MiXed' | lower }}|{{ 'hello wORLD-foo(bar [baz' | title }}"
                      "|{{ 'hELLO World' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}"
                      "|{{ 'aaaa' | replace('a', 'b', 2) }}|{{ messages[1].content | trim }}"
                      "|{{ 'abc' | length }}|{{ 'Ünï' | length }}|{{ 'abc' | list }}"
                      "|{{ 'abc' | first }}|{{ 'abc' | last }}|{{ 42 | string }}",
    "filters_seq": "{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ [1, 2, 3] | join }}"
                   "|{{ ['a', 'b'] | join(', ') }}|{{ [1, none, 'x'] | join('-') }}|{{ [] | first }}"
                   "|{{ {'a': 1, 'b': 2} | list }}|{{ {'a': 1, 'b': 2} | items | list }}"
                   "|{{ [1, 2] | length }}|{{ {'a': 1} | length }}|{{ [1, 2] | count }}"
                   "|{{ messages | map(attribute='role') | join(',') }}"
                   "|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
                   "|{{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='role') | list }}",
    "filters_default": "{{ none | default('x') }}|{{ '' | default('x') }}|{{ '' | default('x', true) }}"
                       "|{{ nope | d('y') }}|{{ false | default('z', boolean=true) }}|{{ nope | default }}",
    "tojson": "{{ 'a\"b\\\\c\\n\\t\u00e9<>&\\'' | tojson }}|{{ {'b': 1, 'a': [1.5, none, true, 'x']} | tojson }}"
              "|{{ messages[0] | tojson }}|{{ {'k': {'n': [1, 2]}} | tojson(indent=2) }}"
              "|{{ [1, 2] | tojson(separators=(',', ':')) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"
              "|{{ 1e16 | tojson }}|{{ '\\x01\\x7f' | tojson }}",
    "filter_precedence": "{{ 'a' + ' b ' | trim + 'c' }}|{{ -1 | abs }}|{{ 'X' ~ 'y' | upper }}"
                         "|{{ ['b', 'a'] | join | upper }}|{{ (' x ' ~ 'y') | trim }}",
    # Tests.
    "tests": "{{ 'x' is string }}|{{ 1 is string }}|{{ 1 is number }}|{{ 1.5 is number }}"
             "|{{ none is none }}|{{ 0 is none }}|{{ 1 is integer }}|{{ 1.0 is float }}"
             "|{{ true is boolean }}|{{ {} is mapping }}|{{ [] is sequence }}|{{ 'a' is iterable }}"
             "|{{ 4 is even }}|{{ 3 is odd }}|{{ 9 is divisibleby 3 }}|{{ 9 is divisibleby(2) }}"
             "|{{ 1 is not none }}|{{ not nope is defined }}|{{ 'a' is lower }}|{{ 'A' is upper }}"
             "|{{ 2 is in [1, 2] }}|{{ 1 is eq 1 }}|{{ 1 is equalto(2) }}|{{ true is true }}"
             "|{{ 1 is true }}|{{ false is false }}|{{ 1 is ne 2 }}",
    # Methods.
    "methods_string": "{{ '  s  '.strip() }}|{{ 'xxsxx'.strip('x') }}|{{ '  s  '.lstrip() }}."
                      "|{{ '  s  '.rstrip() }}.|{{ 'hello'.startswith('he') }}"
                      "|{{ 'hello'.startswith(('x', 'h')) }}|{{ 'hello'.endswith('lo') }}"
                      "|{{ ' a  b c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(' ', 1) }}"
                      "|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'hello world'.title() }}"
                      "|{{ 'hELLO'.capitalize() }}|{{ 'a-b'.replace('-', '_') }}|{{ 'abcabc'.find('c') }}"
                      "|{{ 'abcabc'.count('b') }}|{{ ', '.join(['x', 'y']) }}|{{ 'a<b>c'.split('<')[-1] }}"
                      "|{{ '\u3000wide\u00a0'.strip() }}|{{ 'x'.split('x') }}|{{ ''.split() }}",
    "methods_dict": "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"
                    "|{{ messages[0].get('role') }}|{{ messages[0].get('nope') }}"
                    "|{{ messages[0].get('nope', 'fallback') }}|{{ {'a': 1}.keys() | list }}"
                    "|{{ {'a': 1}.values() | list }}|{% for k in messages[0] %}{{ k }},{% endfor %}",
    # Statements.
    "for_loop": "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}"
                "/{{ loop.first }}/{{ loop.last }}/{{ loop.revindex }}/{{ loop.revindex0 }}"
                "/{{ loop.previtem.role if loop.previtem is defined else '-' }}"
                "/{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% endfor %}",
    "for_else_filter": "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1, 2, 3, 4] "
                       "if x is even %}{{ x }}{{ loop.length }}{{ loop.last }},{% endfor %}"
                       "|{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }},{% endfor %}"
                       "|{% for c in 'hé' %}[{{ c }}]{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"
                       "|{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}",
    "nested_loops": "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}"
                    "{{ loop.length }} {% endfor %}{{ loop.index }}|{% endfor %}",
    "loop_controls": "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}"
                     "{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "if_chain": "{% for n in [0, 1, 2, 3] %}{% if n == 0 %}zero{% elif n == 1 %}one"
                "{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %}",
    "set_scoping": "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}"
                   "{{ x }}|{% if true %}{% set y = 'if-leaks' %}{% endif %}{{ y }}"
                   "|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = ('p', 'q') %}{{ t[1] }}",
    "namespace": "{% set ns = namespace(found=false, n=0, s='') %}{% for m in messages %}"
                 "{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.n = ns.n + 1 %}"
                 "{% endif %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.found }} {{ ns.n }} {{ ns.s }}"
                 " {{ ns.missing is defined }}",
    "set_block": "{% set body %}Hi {{ messages[1].content | trim }}!{% endset %}[{{ body }}]"
                 "{{ body | length }}",
    "macro": "{% macro turn(role, text='none given', sep=': ') %}<{{ role }}{{ sep }}{{ text }}>"
             "{% endmacro %}{{ turn('a') }}{{ turn('b', 'hi') }}{{ turn('c', sep='=', text='t') }}"
             "{% for m in messages %}{{ turn(m.role, m.content | trim) }}{% endfor %}",
    "macro_recursive": "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}"
                       "{% endif %}{% endmacro %}{{ fact(5) }}",
    "raw": "{% raw %}{{ not evaluated }} {% if %}{% endraw %}|{%- raw -%}  x  {%- endraw -%}  |",
    "comments": "a{# a comment #}b {# another\nmulti-line #} c\n  {# lstripped #}\nd{#- trims -#}  e",
    "generation_globals": "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}"
                          "|{{ tools }}|{{ documents }}",
    # Whitespace control under trim_blocks + lstrip_blocks.
    "ws_trim_lstrip": "<ul>\n  {% for m in messages %}\n    <li>{{ m.role }}</li>\n  {% endfor %}\n</ul>\n",
    "ws_minus": "a  \n  {{- 'b' -}}  \n  c\n  {%- if true -%}\n  d  \n  {%- endif %}\n  e",
    "ws_plus": "x\n    {%+ if true %}y{% endif +%}\nz\n  {% if true +%}\nw\n{% endif %}",
    "ws_expr_no_lstrip": "a\n    {{ 'b' }}\n    {% if true %}\nc{% endif %}\n",
    "ws_trailing_newline": "line\n",
    "ws_crlf": "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n",
    "ws_tabs": "\t{% if true %}\n\tin\n\t{% endif %}\nout",
    "brace_in_strings": "{{ '}}' }}|{{ '%}' }}|{{ {'a': {'b': 1}} }}|{% set d = {'x': '{%'} %}{{ d.x }}",
    "truthiness": "{% for v in [0, 1, '', 'a', [], [0], {}, none, 0.0, false] %}"
                  "{{ 'T' if v else 'F' }}{% endfor %}",
    "int_float_filters": "{{ '42' | int }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ '1.5' | float }}"
                         "|{{ 2 | float }}|{{ -3 | abs }}|{{ [1, 2, 3] | reverse | list }}"
                         "|{{ 'abc' | reverse }}",
    "unicode_case": "{{ 'straße' | upper }}|{{ 'ΑΒΓ Σ' | lower }}|{{ 'привет мир' | title }}"
                    "|{{ 'ÉCOLE' | lower }}|{{ 'ĳ ŉ ÿ' | upper }}|{{ 'they\\'re 3rd' .title() }}"
                    "|{{ 'ßx' | capitalize }}|{{ 'ÀÉÎ' is upper }}|{{ 'àé1' is lower }}"
                    "|{{ 'ｆｕｌｌ' | upper }}|{{ 'İ' | lower | length }}",
    "split_edge_cases": "{{ ' a b  c '.split(none, 1) }}|{{ 'a  b'.split(' ') }}"
                        "|{{ 'a,b,c'.split(',', 1) }}|{{ '\u00a0x\u2003y\n'.split() }}"
                        "|{{ 'abc'.split('abc') }}|{{ 'x'.split(',', 0) }}",
    "repr_edge_cases": "{{ ['a\u00a0b', 'tab\there', 'nl\n', '\x7f', 'é'] }}"
                       "|{{ messages[0] }}|{{ [1.5, 'x', none] | string }}|{{ ('x',) | list }}"
                       "|{{ {1: 'a', none: true, 2.5: []} }}|{{ [[], {}, ()] }}",
    "loop_cycle": "{% for m in messages %}{{ loop.cycle('odd', 'even') }},{% endfor %}",
    "tojson_options": "{{ 'é😀' | tojson(ensure_ascii=true) }}|{{ {'a': [1, {'b': none}]} | tojson(indent='\t') }}"
                      "|{{ [] | tojson(indent=2) }}|{{ {} | tojson(indent=2) }}|{{ {1: 2, true: 3} | tojson }}",
    "filters_apply": "{{ ['a', 'b'] | map('upper') | join }}|{{ [1, 2, 3, 4] | select('odd') | list }}"
                     "|{{ [1, 2, 3, 4] | reject('divisibleby', 2) | list }}|{{ [0, 1, '', 'x'] | select | list }}"
                     "|{{ messages | selectattr('role', 'in', ['user', 'system']) | map(attribute='role') | list }}"
                     "|{{ messages | map(attribute='missing', default='?') | list }}"
                     "|{{ messages[0] | items | list }}|{{ messages[0] | attr('role') }}",
    "globals": "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}|{{ dict(x=1, y='z') }}"
               "|{{ range(5) | list }}|{{ range(10, 0, -3) | list }}|{{ range(0) | list }}",
    "macro_defaults": "{% macro m(a, b=a ~ '!', c=none) %}{{ a }}/{{ b }}/{{ c }}{% endmacro %}"
                      "{{ m(1) }}|{{ m(1, 2, 3) }}|{{ m(c='C', a='A') }}|{{ m() }}",
    "precedence_more": "{{ 10 // 3 * 2 }}|{{ not 1 in [1] }}|{{ -2 ** 2 }}|{{ 1 if 0 else 2 if 1 else 3 }}"
                       "|{{ 2 * 3 ~ 4 }}|{{ 1 - 2 - 3 }}|{{ 2 ** 3 ** 0 }}|{{ 'a' ~ 'b' | upper ~ 'c' }}"
                       "|{{ [1, 2][1.5] }}|{{ (1, 2)[0] }}|{{ 'ab' in 'xaby' and 1 }}",
    "ws_unicode_space": "a\n\u00a0 {% if true %}x{% endif %}\n b \u3000{%- if true -%}\u00a0 y{% endif %}",
    "ws_comment_positions": "a\n  {#- c -#}\n  b\n    {# c #}   \nc {# c #}\nd\n{#+ c #}\ne",
    "ws_nested_blocks": "{% for m in messages %}\n  {% if m.role == 'user' %}\n    U: {{ m.content | trim }}\n"
                        "  {% else %}\n    {{ m.role | upper }}\n  {% endif %}\n{% endfor %}\nend",
    "ws_inline_tags": "x {% if true %} y {% endif %} z\n  {{ 'v' }}  {% if true %}w{% endif %}  \n",
    "scoping_nested": "{% set ns = namespace(n=0) %}{% for a in [1, 2] %}{% set outer = a %}"
                      "{% for b in [1, 2] %}{% set ns.n = ns.n + outer * b %}{% set outer = 0 %}{% endfor %}"
                      "{{ outer }}{% endfor %}{{ ns.n }}{{ outer }}|{% for x in [1] %}{% set body %}b{{ x }}"
                      "{% endset %}{{ body }}{% endfor %}{{ body }}",
}

# Feature templates jinja2 (and so transformers) rejects: syntax errors and runtime
# errors. The C++ side must return INVALID_ARGUMENT for each.
ERROR_FEATURES = {
    "unterminated_var": "hello {{ name",
    "unterminated_block": "{% if true %}x",
    "unterminated_tag": "{% if true",
    "unterminated_comment": "a {# comment",
    "unterminated_string": "{{ 'abc }}",
    "bad_expression": "{{ 1 + }}",
    "empty_expression": "{{ }}",
    "unbalanced_paren": "{{ (1 + 2 }}",
    "stray_endfor": "{% endfor %}",
    "mismatched_end": "{% if true %}{% endfor %}",
    "unknown_tag": "{% frobnicate %}",
    "else_twice": "{% if a %}{% else %}{% else %}{% endif %}",
    "raise_exception": "{{ raise_exception('Custom failure: ' ~ messages | length) }}",
    "raise_in_loop": "{% for m in messages %}{% if m.role == 'assistant' %}"
                     "{{ raise_exception('no assistants here') }}{% endif %}{% endfor %}",
    "add_str_int": "{{ 'a' + 1 }}",
    "undefined_attr": "{{ nope.attr }}",
    "undefined_call": "{{ nope() }}",
    "undefined_add": "{{ nope + 1 }}",
    "div_zero": "{{ 1 / 0 }}",
    "none_iter": "{% for x in none %}{% endfor %}",
    "unpack_mismatch": "{% for a, b in [[1, 2, 3]] %}{% endfor %}",
    "compare_str_int": "{{ 'a' < 1 }}",
    "tojson_undefined": "{{ nope | tojson }}",
    "break_outside_loop": "{% break %}",
    "unknown_filter": "{{ 'x' | no_such_filter }}",
    "tojson_namespace": "{{ namespace(a=1) | tojson }}",
    "unpack_int": "{% for a, b in [1] %}{% endfor %}",
    "split_empty_sep": "{{ 'abc'.split('') }}",
    "range_zero_step": "{{ range(0, 10, 0) }}",
    "neg_string": "{{ -'a' }}",
    "set_attr_non_namespace": "{% set d = {} %}{% set d.x = 1 %}",
    "call_non_callable": "{{ messages[0].role() }}",
    "too_many_macro_args": "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
    "unknown_macro_kwarg": "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}",
    "slice_zero_step": "{{ [1, 2][::0] }}",
}


def render(env, template, messages, add_generation_prompt, bos, eos):
    """Returns ("expected", text) or ("error", class name, message)."""
    try:
        compiled = env.from_string(template)
        text = compiled.render(messages=messages, tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt,
                               bos_token=bos, eos_token=eos)
        return {"expected": text}
    except Exception as e:  # noqa: BLE001 -- every failure is a golden error case
        return {"error": type(e).__name__, "error_message": str(e)}


def main():
    env = make_env()
    os.makedirs(os.path.join(OUT, "templates"), exist_ok=True)

    templates = dict(MODEL_TEMPLATES)
    templates["smollm2"] = (read_gguf_template(MODEL), "<|im_start|>", "<|im_end|>")

    cases = []
    for name in sorted(templates):
        text, bos, eos = templates[name]
        with open(os.path.join(OUT, "templates", name + ".jinja"), "w", encoding="utf-8",
                  newline="") as f:
            f.write(text)
        now = TEMPLATE_NOW.get(name)
        tenv = env if now is None else make_env(now)
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (True, False):
                case = {"name": f"{name}/{conv_name}/{'gen' if agp else 'nogen'}",
                        "template": name, "messages": messages, "add_generation_prompt": agp,
                        "bos_token": bos, "eos_token": eos}
                if now is not None:
                    case["now"] = now
                case.update(render(tenv, text, messages, agp, bos, eos))
                cases.append(case)

    for group, features in (("feature", FEATURES), ("error", ERROR_FEATURES)):
        for name, text in features.items():
            case = {"name": f"{group}/{name}", "template_text": text,
                    "messages": FEATURE_MESSAGES, "add_generation_prompt": True,
                    "bos_token": "<s>", "eos_token": "</s>"}
            case.update(render(env, text, FEATURE_MESSAGES, True, "<s>", "</s>"))
            if group == "error" and "error" not in case:
                raise SystemExit(f"error/{name} rendered without an error")
            if group == "feature" and "error" in case:
                raise SystemExit(f"feature/{name} failed: {case['error_message']}")
            cases.append(case)

    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"jinja2_version": jinja2.__version__, "cases": cases}, f, indent=1,
                  ensure_ascii=False)
        f.write("\n")
    n_err = sum("error" in c for c in cases)
    print(f"gen_chat: {len(cases)} cases ({n_err} errors) -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
