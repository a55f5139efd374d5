"""What the conformance tests share: a real `atom serve` in front of a fake OpenAI upstream
(gpt) and a fake Anthropic one (claude), and each feature as a pair of equivalent calls, one
in each SDK's terms.

A case's upstream body is compared with the body that upstream's own SDK sends for the same
call straight to the fake. Fields that legitimately differ are taken off both and named in
DIFFERS; a message's text content as a string is the same as one text block.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anthropic
import openai

from tests.api.conftest import ATOM
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.faults import Behaviour, ScriptedCall
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import FakeServer

REPLY: Final = "Paris is mild today."
KEY_ENV: Final = "ATOM_CONFORMANCE_KEY"

DIFFERS: Final[Mapping[str, frozenset[str]]] = {
    # ATOM always streams from an upstream, whether its client streams or not (it records and
    # relays tokens as they come), and asks OpenAI-format ones for the usage in the stream.
    "openai": frozenset({"stream", "stream_options"}),
    "anthropic": frozenset({"stream"}),
}

_WEATHER: Final = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
_OPENAI_TOOLS: Final = [
    {
        "type": "function",
        "function": {"name": "weather", "description": "The weather now.", "parameters": _WEATHER},
    }
]
_ANTHROPIC_TOOLS: Final = [
    {"name": "weather", "description": "The weather now.", "input_schema": _WEATHER}
]
_ASK: Final = {"role": "user", "content": "Is it warm in Paris?"}
_CALLED: Final = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ],
}
_ANSWERED: Final = {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"}
_USED: Final = {
    "role": "assistant",
    "content": [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
    ],
}
_RESULT: Final = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "21 C, sunny"}],
}
# A 1x1 PNG.
_PNG: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
_SCHEMA: Final = {
    "type": "object",
    "properties": {"warm": {"type": "boolean"}},
    "required": ["warm"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Case:
    """One feature as an OpenAI chat call and the equivalent Anthropic Messages call; `only`
    names the upstream it applies to when the other provider cannot honour it."""

    name: str
    openai: dict[str, Any]
    anthropic: dict[str, Any]
    tool: str | None = None
    only: str | None = None
    # What the Anthropic SDK sends beside its typed parameters, for the direct call.
    extra: dict[str, Any] = field(default_factory=dict)
    # Whether each route can say it: the Messages API has no json_schema nor OpenAI's
    # sampling extras, the chat route no top_k.
    messages_route: bool = True
    chat_route: bool = True


CASES: Final = [
    Case("text", {"messages": [_ASK]}, {"messages": [_ASK]}),
    Case(
        "system_stop_sampling",
        {
            "messages": [{"role": "system", "content": "Be brief."}, _ASK],
            "stop": ["\n\n"],
            "temperature": 0.5,
            "top_p": 0.9,
        },
        {
            "system": "Be brief.",
            "messages": [_ASK],
            "stop_sequences": ["\n\n"],
            "temperature": 0.5,
            "top_p": 0.9,
        },
    ),
    Case(
        "end_user",
        {"messages": [_ASK], "user": "u-42"},
        {"messages": [_ASK], "metadata": {"user_id": "u-42"}},
    ),
    Case(
        "image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{_PNG}"},
                        },
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": _PNG},
                        },
                    ],
                }
            ]
        },
    ),
    Case(
        "tools_auto",
        {"messages": [_ASK], "tools": _OPENAI_TOOLS},
        {"messages": [_ASK], "tools": _ANTHROPIC_TOOLS},
        tool="weather",
    ),
    Case(
        "tool_named_one_call",
        {
            "messages": [_ASK],
            "tools": _OPENAI_TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": False,
        },
        {
            "messages": [_ASK],
            "tools": _ANTHROPIC_TOOLS,
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        },
        tool="weather",
    ),
    Case(
        "tool_required",
        {"messages": [_ASK], "tools": _OPENAI_TOOLS, "tool_choice": "required"},
        {"messages": [_ASK], "tools": _ANTHROPIC_TOOLS, "tool_choice": {"type": "any"}},
        tool="weather",
    ),
    Case(
        "tool_result",
        {"messages": [_ASK, _CALLED, _ANSWERED], "tools": _OPENAI_TOOLS},
        {"messages": [_ASK, _USED, _RESULT], "tools": _ANTHROPIC_TOOLS},
    ),
    Case(
        "json_schema",
        {
            "messages": [_ASK],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "warmth", "schema": _SCHEMA, "strict": True},
            },
        },
        {"messages": [_ASK]},
        extra={"output_config": {"format": {"type": "json_schema", "schema": _SCHEMA}}},
        messages_route=False,
    ),
    Case(
        "openai_only",
        {
            "messages": [_ASK],
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logit_bias": {"50256": -100},
            "logprobs": True,
            "top_logprobs": 2,
        },
        {"messages": [_ASK]},
        only="gpt",
        messages_route=False,
    ),
    Case(
        "top_k",
        {"messages": [_ASK]},
        {"messages": [_ASK], "top_k": 5},
        only="claude",
        chat_route=False,
    ),
]


@dataclass
class Served:
    """`atom serve` in front of the two fakes, with an admin key."""

    url: str
    key: str
    gpt: FakeOpenAI
    claude: FakeAnthropic

    def fake(self, model: str) -> FakeServer:
        return self.gpt if model == "gpt" else self.claude

    @contextmanager
    def sent(self, model: str) -> Iterator[list[Any]]:
        """The bodies the model's fake receives inside the block."""
        fake = self.fake(model)
        start = len(fake.requests)
        bodies: list[Any] = []
        yield bodies
        bodies.extend(r.body for r in fake.requests[start:])

    def direct(self, model: str, case: Case) -> Any:
        """What the upstream's own SDK sends for the case, straight to the fake."""
        with self.sent(model) as bodies:
            if model == "gpt":
                with openai.OpenAI(base_url=self.gpt.base_url, api_key="sk-direct") as client:
                    client.chat.completions.create(model="gpt", max_tokens=32, **case.openai)
            else:
                with anthropic.Anthropic(base_url=self.claude.origin, api_key="direct") as client:
                    typed, extra = anthropic_kwargs(case.anthropic)
                    client.messages.create(
                        model="claude", max_tokens=32, **typed, extra_body={**extra, **case.extra}
                    )
        [body] = bodies
        return body


_TYPED: Final = frozenset(inspect.signature(anthropic.resources.Messages.create).parameters)


def anthropic_kwargs(call: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Messages call as the anthropic SDK takes it: its typed parameters, and the rest as
    extra_body (this SDK has dropped temperature, top_p and top_k, which the API still takes)."""
    typed = {k: v for k, v in call.items() if k in _TYPED}
    return typed, {k: v for k, v in call.items() if k not in _TYPED}


def upstreams(case: Case) -> list[str]:
    return [model for model in ("gpt", "claude") if case.only in (None, model)]


def provider(model: str) -> str:
    return "openai" if model == "gpt" else "anthropic"


def comparable(provider: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A body without the fields that legitimately differ; text content as blocks, a tool
    call's arguments as the JSON they encode."""
    kept = {k: v for k, v in body.items() if k not in DIFFERS[provider]}
    if provider == "openai":
        kept["messages"] = [
            {**m, "tool_calls": [_parsed(call) for call in m["tool_calls"]]}
            if m.get("tool_calls")
            else m
            for m in kept["messages"]
        ]
    else:
        kept["messages"] = [
            {**m, "content": [{"type": "text", "text": m["content"]}]}
            if isinstance(m["content"], str)
            else m
            for m in kept["messages"]
        ]
    return kept


def _parsed(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {**call, "function": {**function, "arguments": json.loads(function["arguments"])}}


@contextmanager
def serving(directory: Path) -> Iterator[Served]:
    """Start the fakes and `atom serve` in front of them; stop them all at the end."""
    behaviour = Behaviour(reply=REPLY, tool_calls=(ScriptedCall("weather", {"city": "Paris"}),))
    with ExitStack() as stack:
        gpt = stack.enter_context(FakeOpenAI.in_thread(default=behaviour))
        claude = stack.enter_context(FakeAnthropic.in_thread(default=behaviour))
        tags = '"text_generation", "tools", "multimodal"'
        models = [
            ("gpt", "openai", gpt.base_url, tags + ', "embeddings"'),
            ("claude", "anthropic", claude.origin, tags),
        ]
        config = directory / "atom.toml"
        config.write_text(
            f'[log]\npath = "{directory / "atom.db"}"\ndurability = "normal"\n'
            + "".join(
                f'[[models]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{name}"\n'
                f'base_url = "{url}"\napi_key_env = "{KEY_ENV}"\ncapabilities = [{tags}]\n'
                "input_usd_per_mtok = 1\noutput_usd_per_mtok = 2\ncontext_window = 8192\n"
                for name, provider, url, tags in models
            )
        )
        process = subprocess.Popen(
            [ATOM, "serve", "--config", str(config), "--port", "0", "--rate-limit", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, KEY_ENV: "sk-conformance"},
        )  # fmt: skip
        assert process.stdout is not None
        key = url = ""
        for line in process.stdout:
            if re.fullmatch(r"atom_\S+", line.strip()):
                key = line.strip()
            if line.startswith("atom: serving on "):
                url = line.removeprefix("atom: serving on ").strip()
                break
        assert key and url, "atom serve ended before serving"
        # Its output is read to the end, so that it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        try:
            yield Served(url, key, gpt, claude)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
