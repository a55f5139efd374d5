"""Text out of chat messages, and the transcript prompt for base models without a chat template.

The transcript puts one turn after another, each led by its speaker, and ends with an open
assistant turn:

    System: You answer briefly.
    User: What is 2 + 2?
    Assistant:

A base model continues the text; `TRANSCRIPT_STOPS` ends its answer where it would start
the next turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._base import Message
from ._errors import ErrorKind, ProviderError

_SPEAKERS = {
    "system": "System",
    "developer": "System",
    "user": "User",
    "assistant": "Assistant",
    "tool": "Tool",
}
ASSISTANT_CUE = "Assistant:"
TRANSCRIPT_STOPS = tuple(f"\n{speaker}:" for speaker in dict.fromkeys(_SPEAKERS.values()))


def message_text(message: Message) -> str:
    """The text of a message whose content is a string or a list of text parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ProviderError(
                    ErrorKind.BAD_REQUEST, f"only text content is supported, got a {kind} part"
                )
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise ProviderError(ErrorKind.BAD_REQUEST, "message content must be a string or a list")


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    raise ProviderError(ErrorKind.BAD_REQUEST, "the messages hold no user message")


def transcript(messages: Sequence[Message]) -> str:
    """The transcript prompt of these messages, ending with an open assistant turn."""
    if not messages:
        raise ProviderError(ErrorKind.BAD_REQUEST, "no messages")
    turns = [f"{_speaker(m)}: {message_text(m).strip()}" for m in messages]
    return "\n".join([*turns, ASSISTANT_CUE])


def _speaker(message: Message) -> str:
    role = message.get("role")
    if role not in _SPEAKERS:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unknown message role {role!r}")
    return _SPEAKERS[role]
