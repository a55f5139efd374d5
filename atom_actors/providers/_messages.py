"""Chat messages between OpenAI's shape, the gateway's own, and Anthropic's Messages API.

Both directions are pure and raise ValueError for what has no counterpart (tool calls, audio).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from atom_actors.providers._base import Message

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
        if role not in _TURN_ROLES or message.get("tool_calls"):
            raise ValueError(f"a {role!r} message has no Anthropic counterpart")
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
        if not isinstance(content, str):
            content = [_block_to_part(block) for block in _sequence(content)]
        out.append({"role": role, "content": content})
    return out


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
