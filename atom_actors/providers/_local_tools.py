"""Tool calling for a local model: the prompt that offers the tools, the grammar that holds its
answer to them, and the calls read back from that answer.

The model calls tools by answering with a JSON array, `[{"name": ..., "arguments": {...}}]`.
The grammar is built from the tools' JSON schemas, so whatever the model samples is such an
array naming an offered tool with arguments its schema allows: even a 270M model cannot answer
with a call that does not parse. With tool_choice auto the grammar also lets it answer in plain
text, which then cannot start with "[": the first character tells a call from an answer.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import Final

import orjson
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from ._base import (
    TOOL_CALLS,
    CallParams,
    Delta,
    Event,
    Finish,
    Message,
    Tool,
    ToolCallDelta,
    ToolResult,
    message_tool_calls,
)
from ._errors import ErrorKind, ProviderError
from ._prompt import message_text

MAX_PARALLEL_CALLS: Final = 4
"""The most calls one answer makes when the request asks for parallel calls. Without that ask
an answer makes one call: a small model left free to add calls repeats its first one until
max_tokens cuts it."""
_OPENING = "["


def offered(params: CallParams) -> tuple[Tool, ...]:
    """The tools the model may call in this answer: all, the one named, or none."""
    if not params.calls_tools:
        return ()
    choice = params.tool_choice
    if choice is not None and choice.mode == "function":
        return tuple(tool for tool in params.tools if tool.name == choice.name)
    return params.tools


def plain_messages(messages: Sequence[Message], params: CallParams) -> list[Message]:
    """The messages as text a model without tool support reads: the tools offered in a system
    message first, earlier calls as the JSON the model would have answered, results as turns
    of the tool."""
    tools = offered(params)
    out: list[Message] = []
    if tools:
        out.append({"role": "system", "content": preamble(tools, _must_call(params))})
    for message in messages:
        calls = message_tool_calls(message)
        if calls:
            said = message_text(message)
            written = orjson.dumps(
                [{"name": c.name, "arguments": c.parsed_arguments()} for c in calls]
            ).decode()
            out.append({"role": "assistant", "content": f"{said}\n{written}" if said else written})
        elif message.get("role") == "tool":
            result = ToolResult.from_openai(message)
            out.append({"role": "tool", "content": result.text()})
        else:
            out.append(message)
    return out


def preamble(tools: Sequence[Tool], must: bool) -> str:
    """What the model is told about the tools and how to call them."""
    lines = [
        "You can call these tools. To call tools, answer with only a JSON array of calls, "
        'like [{"name": "tool_name", "arguments": {...}}].'
        + ("" if must else " Otherwise answer in words."),
        "Tools:",
    ]
    for tool in tools:
        schema = json.dumps(tool.schema(), separators=(",", ":"))
        about = f": {tool.description}" if tool.description else ""
        lines.append(f"- {tool.name}{about} Arguments: {schema}")
    return "\n".join(lines)


def grammar(params: CallParams) -> LlamaGrammar | None:
    """The grammar of an answer to these tools, or None when no tool may be called."""
    tools = offered(params)
    if not tools:
        return None
    parallel = params.parallel_tool_calls is True
    key = orjson.dumps([tool.to_openai() for tool in tools], option=orjson.OPT_SORT_KEYS)
    try:
        text = _grammar_text(key.decode(), parallel, _must_call(params))
    # The converter reports unsupported schemas with asserts, KeyErrors and more.
    except Exception as exc:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unsupported tool schema: {exc}") from exc
    return LlamaGrammar.from_string(text, verbose=False)


@functools.lru_cache(maxsize=64)
def _grammar_text(tools_json: str, parallel: bool, must: bool) -> str:
    tools = [Tool.from_openai(tool) for tool in json.loads(tools_json)]
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.schema()},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    schema = {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 1,
        "maxItems": MAX_PARALLEL_CALLS if parallel else 1,
    }
    converted = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    # The converter's root is the array of calls; the answer's root may add plain text.
    rules = converted.replace("root ::=", "tool-calls ::=", 1)
    if must:
        return f"root ::= tool-calls\n{rules}"
    # Plain text is anything that does not open with "[" (0x5B) or whitespace.
    return f"root ::= tool-calls | words\nwords ::= [^\\x5B \\t\\n] [^\\x00]*\n{rules}"


def _must_call(params: CallParams) -> bool:
    choice = params.tool_choice
    return choice is not None and choice.mode in ("required", "function")


def read_calls(events: Iterator[Event]) -> Iterator[Event]:
    """An answer's events with its calls read back: text as it was, or, for an answer that
    opens with "[", its calls as one ToolCallDelta each and the finish reason tool_calls.

    A call cut short by max_tokens does not parse: it stays text, finished by `length`.
    """
    held: list[Delta] = []
    calling: bool | None = None
    for event in events:
        if isinstance(event, Finish):
            yield from _finish(held, calling, event)
            return
        if isinstance(event, Delta) and calling is not True:
            held.append(event)
            opening = "".join(delta.text for delta in held).lstrip()
            if not opening:
                continue
            calling = opening.startswith(_OPENING)
            if not calling:
                yield from held
                held = []
        elif isinstance(event, Delta):
            held.append(event)
        else:
            yield event


def _finish(held: list[Delta], calling: bool | None, finish: Finish) -> Iterator[Event]:
    text = "".join(delta.text for delta in held)
    if not calling:
        yield from held
        yield finish
        return
    try:
        # The grammar's strings may hold raw control characters, which strict JSON refuses.
        calls = json.loads(text, strict=False)
    except ValueError:
        yield Delta(text, tokens=len(held))
        yield finish
        return
    for index, call in enumerate(calls):
        arguments = json.dumps(call["arguments"], separators=(",", ":"), ensure_ascii=False)
        yield ToolCallDelta(index, f"call_{secrets.token_hex(12)}", call["name"], arguments)
    reason = TOOL_CALLS if finish.finish_reason == "stop" else finish.finish_reason
    yield Finish(finish.usage, reason, finish.mean_logprob, finish.raw)
