"""Consume a provider's stream the way a caller does, keeping what it yielded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from atom_actors.providers._base import (
    Delta,
    Deltas,
    Event,
    Finish,
    ToolCall,
    ToolCallDelta,
    assemble_tool_calls,
)


@dataclass(slots=True)
class Drained:
    """The deltas a stream yielded and its Finish; finish stays None if the stream failed."""

    deltas: list[Delta] = field(default_factory=list)
    finish: Finish | None = None
    tool_pieces: list[ToolCallDelta] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(delta.text for delta in self.deltas)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return assemble_tool_calls(self.tool_pieces)


async def drain(events: AsyncIterator[Event], into: Drained | None = None) -> Drained:
    """Read a stream to its end; pass `into` to keep the deltas seen before an error."""
    drained = into if into is not None else Drained()
    async for event in events:
        assert drained.finish is None, "an event came after the Finish"
        if isinstance(event, Finish):
            drained.finish = event
        elif isinstance(event, Deltas):
            drained.deltas.extend(event.items)
        elif isinstance(event, ToolCallDelta):
            drained.tool_pieces.append(event)
        else:
            drained.deltas.append(event)
    assert drained.finish is not None, "the stream ended without a Finish"
    return drained
