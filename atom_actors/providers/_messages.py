"""Chat messages and tools between OpenAI's shape, the gateway's own, and Anthropic's
Messages API.

Both directions are pure and raise ValueError for what has no counterpart (audio, documents).
An assistant's tool calls are Anthropic's tool_use blocks, and OpenAI's `tool` messages are
tool_result blocks in a user turn; a tool_result marked is_error reaches OpenAI's shape as a
tool message whose text starts with "Error: ", which is all that shape can say of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from atom_actors.providers._base import (
    Message,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    message_tool_calls,
)

AnthropicSystem = str | list[dict[str, Any]]

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TURN_ROLES = frozenset({"user", "assistant"})


def to_anthropic(
    messages: Sequence[Message],
) -> tuple[AnthropicSystem | None, list[dict[str, Any]]]:
    """Hoist system messages into Anthropic's `system` and merge consecutive same-role turns."""
    try:
        return _to_anthropic(messages)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a malformed message: {exc!r}") from exc


def to_openai(
    system: AnthropicSystem | None, messages: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Anthropic's system and turns as OpenAI-style messages: one system message per block."""
    try:
        return _to_openai(system, messages)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a malformed message: {exc!r}") from exc


def _to_anthropic(
    messages: Sequence[Message],
) -> tuple[AnthropicSystem | None, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.extend(_system_texts(message.get("content")))
            continue
        content: str | list[dict[str, Any]]
        if role == "tool":
            role, content = "user", [_tool_result_block(ToolResult.from_openai(message))]
        elif role not in _TURN_ROLES:
            raise ValueError(f"a {role!r} message has no Anthropic counterpart")
        elif role == "assistant" and message.get("tool_calls"):
            content = _assistant_blocks(message)
        else:
            content = _content_to_anthropic(message.get("content"))
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _blocks(turns[-1]["content"]) + _blocks(content)
        else:
            turns.append({"role": role, "content": content})
    if not system:
        return None, turns
    if len(system) == 1:
        return system[0], turns
    return [{"type": "text", "text": text} for text in system], turns


def _to_openai(
    system: AnthropicSystem | None, messages: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(system, str):
        out.append({"role": "system", "content": system})
    elif system is not None:
        out.extend({"role": "system", "content": _block_text(block)} for block in system)
    for message in messages:
        role = message.get("role")
        if role not in _TURN_ROLES:
            raise ValueError(f"Anthropic messages have no {role!r} role")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "assistant":
            out.append(_assistant_message(_sequence(content)))
        else:
            out.extend(_user_messages(_sequence(content)))
    return out


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks = [] if content in (None, "") else _blocks(_content_to_anthropic(content))
    for call in message_tool_calls(message):
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)})
    return blocks


def _input(call: ToolCall) -> Any:
    value = call.parsed_arguments()
    if not isinstance(value, dict):
        raise ValueError(f"tool call {call.id}: Anthropic takes a JSON object as its input")
    return value


def _tool_result_block(result: ToolResult) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = (
        result.content
        if isinstance(result.content, str)
        else [_part_to_block(part) for part in result.content]
    )
    return {"type": "tool_result", "tool_use_id": result.tool_call_id, "content": content}


def _assistant_message(blocks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append(ToolCall(str(block["id"]), str(block["name"]), arguments).to_openai())
        else:
            parts.append(_block_to_part(block))
    if not calls:
        return {"role": "assistant", "content": parts}
    # Beside tool calls, OpenAI's assistant content is text or nothing.
    if any(part["type"] != "text" for part in parts):
        raise ValueError("an assistant turn with tool calls can hold text besides them, no images")
    text = "".join(part["text"] for part in parts)
    return {"role": "assistant", "content": text or None, "tool_calls": calls}


def _user_messages(blocks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A user turn: its tool results as `tool` messages first, then the rest as one message."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "tool_result":
            out.append(_tool_message(block))
        else:
            parts.append(_block_to_part(block))
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _tool_message(block: Mapping[str, Any]) -> dict[str, Any]:
    content = block.get("content", "")
    if not isinstance(content, str):
        texts = []
        for part in _sequence(content):
            if part.get("type") != "text":
                raise ValueError(
                    f"a tool result's {part.get('type')!r} block has no OpenAI counterpart"
                )
            texts.append(str(part["text"]))
        content = "".join(texts)
    if block.get("is_error"):
        content = f"Error: {content}"
    return ToolResult(str(block["tool_use_id"]), content).to_openai()


def tools_to_anthropic(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """OpenAI's function tools as Anthropic's: the parameters' schema is the input_schema."""
    out = []
    for tool in tools:
        translated: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            translated["description"] = tool.description
        translated["input_schema"] = dict(tool.schema())
        if tool.strict is not None:
            translated["strict"] = tool.strict
        out.append(translated)
    return out


def tool_choice_to_anthropic(
    choice: ToolChoice | None, parallel: bool | None
) -> dict[str, Any] | None:
    """Anthropic's tool_choice: auto, any (OpenAI's required), tool (a named one), none; and
    parallel_tool_calls false as disable_parallel_tool_use."""
    if choice is None and parallel is None:
        return None
    mode = "auto" if choice is None else choice.mode
    translated: dict[str, Any] = {"type": _CHOICES[mode]}
    if choice is not None and choice.mode == "function":
        translated["name"] = choice.name
    if parallel is False and mode != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


_CHOICES = {"auto": "auto", "none": "none", "required": "any", "function": "tool"}
_CHOICES_BACK = {anthropic: openai for openai, anthropic in _CHOICES.items()}


def tools_to_openai(tools: Sequence[Mapping[str, Any]]) -> tuple[Tool, ...]:
    """Anthropic's client tools as the gateway's; ValueError for a server tool (web search...)."""
    out = []
    for tool in tools:
        if tool.get("type", "custom") != "custom" or "input_schema" not in tool:
            raise ValueError(f"tool {tool.get('name')!r}: only client tools with an input_schema")
        out.append(
            Tool(tool["name"], tool.get("description"), tool["input_schema"], tool.get("strict"))
        )
    return tuple(out)


def tool_choice_to_openai(choice: Mapping[str, Any]) -> tuple[ToolChoice, bool | None]:
    """Anthropic's tool_choice as the gateway's, with parallel_tool_calls (None: the default)."""
    mode = _CHOICES_BACK.get(str(choice.get("type")))
    if mode is None:
        raise ValueError(f"tool_choice: unknown type {choice.get('type')!r}")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if mode == "function":
        return ToolChoice("function", str(choice["name"])), parallel
    return ToolChoice(mode), parallel  # type: ignore[arg-type]


def _system_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for part in _sequence(content):
        if part.get("type") != "text":
            raise ValueError(f"a system message cannot hold a {part.get('type')!r} part")
        texts.append(part["text"])
    return texts


def _content_to_anthropic(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [_part_to_block(part) for part in _sequence(content)]


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _part_to_block(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        url = part["image_url"]["url"]
        if not url.startswith("data:"):
            return {"type": "image", "source": {"type": "url", "url": url}}
        header, comma, data = url.removeprefix("data:").partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64":
            raise ValueError("an image data URL must be base64-encoded")
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    raise ValueError(f"a {kind!r} content part has no Anthropic counterpart")


def _block_to_part(block: Mapping[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        source = block["source"]
        if source["type"] == "base64":
            url = f"data:{source['media_type']};base64,{source['data']}"
        elif source["type"] == "url":
            url = source["url"]
        else:
            raise ValueError(f"an image from a {source['type']!r} source has no OpenAI counterpart")
        return {"type": "image_url", "image_url": {"url": url}}
    raise ValueError(f"a {kind!r} content block has no OpenAI counterpart")


def _block_text(block: Mapping[str, Any]) -> str:
    if block.get("type") != "text":
        raise ValueError(f"a system block must be text, not {block.get('type')!r}")
    return str(block["text"])


def _sequence(content: Any) -> Sequence[Mapping[str, Any]]:
    if not isinstance(content, Sequence) or isinstance(content, str | bytes):
        raise ValueError(f"message content must be a string or a list of parts, not {content!r}")
    return content
