"""The llama.cpp provider, on the real embedded Gemma 3 270M model (a few tokens per call)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import jsonschema_rs
import llama_cpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atom_actors.catalog import ModelSpec
from atom_actors.cost import prompt_bound, prompt_size
from atom_actors.providers._base import (
    BlockingProvider,
    CallParams,
    Delta,
    Event,
    Finish,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    assemble_tool_calls,
)
from atom_actors.providers._errors import ErrorKind, ProviderError
from atom_actors.providers._prompt import TRANSCRIPT_STOPS, transcript
from atom_actors.providers.llamacpp import LlamaCppProvider, _Holdback, default_model_path

N_CTX = 512
QUESTION: list[Message] = [{"role": "user", "content": "What is the capital of France?"}]
JSON_QUESTION: list[Message] = [
    {
        "role": "user",
        "content": 'What is the capital of France? Answer in JSON like {"capital": "..."}',
    }
]
GREEDY = CallParams(max_tokens=12, temperature=0.0)
# Gemma's instruction-tuned template, minus tool handling: the base file carries none.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def gemma() -> Iterator[LlamaCppProvider]:
    provider = LlamaCppProvider(n_ctx=N_CTX)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def reference() -> llama_cpp.Llama:
    """llama-cpp-python's own completion API on the same file: the oracle for our streaming."""
    return llama_cpp.Llama(str(default_model_path()), n_ctx=N_CTX, n_threads=2, verbose=False)


def _run(
    provider: LlamaCppProvider, params: CallParams, messages: Sequence[Message] = QUESTION
) -> tuple[list[Delta], Finish]:
    events: list[Event] = list(provider.generate(messages, params))
    *deltas, finish = events
    assert all(isinstance(d, Delta) for d in deltas)
    assert isinstance(finish, Finish)
    return [d for d in deltas if isinstance(d, Delta)], finish


def _text(deltas: Sequence[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_a_short_generation_returns_text_and_usage(gemma: LlamaCppProvider) -> None:
    assert isinstance(gemma, BlockingProvider)
    deltas, finish = _run(gemma, CallParams(max_tokens=4, temperature=0.0))
    assert _text(deltas).strip()
    assert finish.usage is not None
    assert finish.usage.completion_tokens == 4
    assert finish.finish_reason == "length"
    assert finish.mean_logprob is None
    assert finish.raw["prompt_format"] == "transcript"


def test_the_stream_is_what_llama_cpp_completes_for_the_transcript(
    gemma: LlamaCppProvider, reference: llama_cpp.Llama
) -> None:
    deltas, finish = _run(gemma, GREEDY)
    expected = reference.create_completion(
        transcript(QUESTION), max_tokens=12, temperature=0.0, stop=list(TRANSCRIPT_STOPS)
    )
    assert isinstance(expected, dict)
    assert len(deltas) >= 3
    assert _text(deltas) == expected["choices"][0]["text"].lstrip()
    assert finish.finish_reason == expected["choices"][0]["finish_reason"]
    assert finish.usage is not None
    assert finish.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert finish.usage.completion_tokens == expected["usage"]["completion_tokens"]


def test_greedy_and_seeded_sampling_are_reproducible(gemma: LlamaCppProvider) -> None:
    assert _text(_run(gemma, GREEDY)[0]) == _text(_run(gemma, GREEDY)[0])
    seeded = CallParams(max_tokens=12, temperature=1.0, seed=7)
    first, finish = _run(gemma, seeded)
    assert _text(first) == _text(_run(gemma, seeded)[0])
    assert finish.raw["seed"] == 7


def test_a_stop_sequence_ends_the_answer_before_it(gemma: LlamaCppProvider) -> None:
    answer = _text(_run(gemma, GREEDY)[0])
    stop = " " + answer.split()[2]
    deltas, finish = _run(gemma, CallParams(max_tokens=12, temperature=0.0, stop=(stop,)))
    assert _text(deltas) == answer[: answer.index(stop)]
    assert finish.finish_reason == "stop"


@pytest.mark.parametrize(
    "response_format",
    [
        {
            "type": "json_schema",
            "json_schema": {
                "name": "place",
                "schema": {
                    "type": "object",
                    "properties": {"capital": {"type": "string", "maxLength": 12}},
                    "required": ["capital"],
                    "additionalProperties": False,
                },
            },
        },
        {"type": "json_object"},
    ],
)
def test_a_response_format_constrains_the_answer_to_json(
    gemma: LlamaCppProvider, response_format: dict[str, object]
) -> None:
    params = CallParams(max_tokens=24, temperature=0.0, response_format=response_format)
    deltas, finish = _run(gemma, params, JSON_QUESTION)
    answer = json.loads(_text(deltas))
    assert finish.finish_reason == "stop"
    assert isinstance(answer, dict)
    if response_format["type"] == "json_schema":
        assert list(answer) == ["capital"]
        assert isinstance(answer["capital"], str)
        assert len(answer["capital"]) <= 12


def test_logprobs_are_given_per_delta_and_averaged(gemma: LlamaCppProvider) -> None:
    deltas, finish = _run(gemma, CallParams(max_tokens=5, temperature=0.0, logprobs=True))
    assert finish.finish_reason == "length"
    assert finish.mean_logprob is not None
    assert finish.mean_logprob <= 0.0
    logprobs = [d.logprob for d in deltas]
    assert all(lp is not None and lp <= 0.0 for lp in logprobs)
    total = sum(lp for lp in logprobs if lp is not None)
    assert finish.usage is not None
    assert total == pytest.approx(finish.mean_logprob * finish.usage.completion_tokens)


def test_token_counts_agree_with_usage(gemma: LlamaCppProvider) -> None:
    _, finish = _run(gemma, CallParams(max_tokens=1, temperature=0.0))
    assert finish.usage is not None
    assert gemma.count_prompt_tokens(QUESTION) == finish.usage.prompt_tokens
    # The prompt is the transcript plus the BOS token.
    assert gemma.count_tokens(transcript(QUESTION)) + 1 == finish.usage.prompt_tokens
    assert gemma.count_tokens("") == 0


def test_a_prompt_longer_than_the_context_is_a_bad_request(gemma: LlamaCppProvider) -> None:
    long: list[Message] = [{"role": "user", "content": "word " * N_CTX}]
    with pytest.raises(ProviderError, match="context window of 512 tokens") as caught:
        _run(gemma, GREEDY, long)
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert _text(_run(gemma, GREEDY)[0])


@pytest.mark.parametrize(
    ("params", "messages", "message"),
    [
        (CallParams(max_tokens=0), QUESTION, "max_tokens"),
        (CallParams(temperature=-0.5), QUESTION, "temperature"),
        (CallParams(response_format={"type": "xml"}), QUESTION, "response_format"),
        (GREEDY, [{"role": "user", "content": [{"type": "image_url"}]}], "only text"),
        (GREEDY, [{"role": "wizard", "content": "hi"}], "role"),
    ],
)
def test_malformed_calls_are_bad_requests(
    gemma: LlamaCppProvider, params: CallParams, messages: list[Message], message: str
) -> None:
    with pytest.raises(ProviderError, match=message) as caught:
        _run(gemma, params, messages)
    assert caught.value.kind is ErrorKind.BAD_REQUEST


def test_an_overlapping_call_is_refused_until_the_first_is_closed(
    gemma: LlamaCppProvider,
) -> None:
    first = gemma.generate(QUESTION, GREEDY)
    assert isinstance(next(first), Delta)
    with pytest.raises(ProviderError) as caught:
        _run(gemma, GREEDY)
    assert caught.value.kind is ErrorKind.OVERLOADED
    first.close()
    assert _text(_run(gemma, GREEDY)[0])


def test_a_chat_template_shapes_the_prompt() -> None:
    provider = LlamaCppProvider(n_ctx=N_CTX, chat_template=GEMMA_TEMPLATE)
    try:
        _, finish = _run(provider, CallParams(max_tokens=3, temperature=0.0))
        assert finish.raw["prompt_format"] == "chat_template"
        # The question, and <bos> <start_of_turn> user \n ... <end_of_turn> \n <start_of_turn>
        # model \n: the template's control tokens are one token each.
        assert finish.usage is not None
        assert finish.usage.prompt_tokens == provider.count_tokens(QUESTION[0]["content"]) + 9
        assert provider.count_prompt_tokens(QUESTION) == finish.usage.prompt_tokens
        with pytest.raises(ProviderError, match="roles must alternate") as caught:
            _run(provider, GREEDY, [*QUESTION, *QUESTION])
        assert caught.value.kind is ErrorKind.BAD_REQUEST
    finally:
        provider.close()
    with pytest.raises(ProviderError, match="closed"):
        _run(provider, GREEDY)
    with pytest.raises(ProviderError, match="closed"):
        provider.count_tokens("hello")


@given(
    st.lists(st.text(alphabet="ab\n:", max_size=4), max_size=8),
    st.text(alphabet="ab\n:", min_size=1, max_size=3),
)
def test_holdback_releases_exactly_the_text_before_the_first_stop(
    pieces: list[str], stop: str
) -> None:
    holdback = _Holdback([stop])
    released: list[Delta] = []
    stopped = False
    for piece in pieces:
        out, stopped = holdback.push(Delta(piece))
        released += out
        if stopped:
            break
    if not stopped:
        released += holdback.flush()
    text = "".join(pieces)
    assert stopped == (stop in text)
    assert _text(released) == (text[: text.index(stop)] if stop in text else text)


turns = st.lists(st.text(st.characters(codec="utf-8"), max_size=120), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(turns, st.none() | st.text(st.characters(codec="utf-8"), max_size=60))
def test_the_prompt_bound_covers_the_local_models_own_tokenizer(
    gemma: LlamaCppProvider, texts: list[str], system: str | None
) -> None:
    messages: list[Message] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(texts)
    ]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    spec = ModelSpec("gemma", "llamacpp", "gemma", frozenset(), 0.0, 0.0, N_CTX)
    assert gemma.count_prompt_tokens(messages) <= prompt_bound(spec, prompt_size(messages))


# ------------------------------------------------------------------------------ tool calling

WEATHER_ASK: list[Message] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = Tool(
    "weather",
    "The weather in a city now.",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
     "required": ["city"], "additionalProperties": False},
)  # fmt: skip
# Schemas of several shapes: a number and an enum, a flag and a nested object, no arguments.
SHAPES = [
    Tool("convert", "Convert an amount.", {
        "type": "object",
        "properties": {"amount": {"type": "integer"}, "unit": {"enum": ["C", "F"]}},
        "required": ["amount", "unit"], "additionalProperties": False}),
    Tool("book", "Book a table.", {
        "type": "object",
        "properties": {"outside": {"type": "boolean"},
                       "when": {"type": "object", "properties": {"hour": {"type": "integer"}},
                                "required": ["hour"], "additionalProperties": False}},
        "required": ["outside", "when"], "additionalProperties": False}),
]  # fmt: skip


def _calls(events: list[Event]) -> tuple[list[ToolCall], Finish]:
    *items, finish = events
    assert isinstance(finish, Finish)
    pieces = [item for item in items if isinstance(item, ToolCallDelta)]
    return list(assemble_tool_calls(pieces)), finish


@pytest.mark.parametrize("tool", SHAPES, ids=[tool.name for tool in SHAPES])
def test_a_required_call_parses_and_fits_its_tools_schema(
    gemma: LlamaCppProvider, tool: Tool
) -> None:
    params = CallParams(max_tokens=64, temperature=1.0, seed=7, tools=(WEATHER, tool),
                        tool_choice=ToolChoice("function", tool.name))  # fmt: skip
    calls, finish = _calls(list(gemma.generate(WEATHER_ASK, params)))

    assert finish.finish_reason == "tool_calls"
    [call] = calls
    assert call.name == tool.name and call.id.startswith("call_")
    assert jsonschema_rs.is_valid(dict(tool.schema()), call.parsed_arguments())


def test_the_model_calls_the_tool_the_question_needs(gemma: LlamaCppProvider) -> None:
    params = CallParams(
        max_tokens=48, temperature=0.0, tools=(WEATHER, *SHAPES), tool_choice=ToolChoice("required")
    )
    calls, finish = _calls(list(gemma.generate(WEATHER_ASK, params)))

    assert finish.finish_reason == "tool_calls"
    assert [(c.name, c.parsed_arguments()) for c in calls] == [("weather", {"city": "Paris"})]
    assert finish.usage is not None and finish.usage.completion_tokens > 5


def test_with_auto_the_answer_is_words_or_calls_never_a_broken_call(
    gemma: LlamaCppProvider,
) -> None:
    params = CallParams(max_tokens=12, temperature=0.0, tools=(WEATHER,))
    events = list(gemma.generate(WEATHER_ASK, params))
    calls, finish = _calls(events)
    text = "".join(e.text for e in events if isinstance(e, Delta))

    if calls:
        assert finish.finish_reason == "tool_calls" and text == ""
    else:
        assert text.strip() and not text.lstrip().startswith("[")


def test_a_call_cut_by_max_tokens_stays_text_finished_by_length(gemma: LlamaCppProvider) -> None:
    params = CallParams(max_tokens=3, temperature=0.0, tools=(WEATHER,),
                        tool_choice=ToolChoice("required"))  # fmt: skip
    events = list(gemma.generate(WEATHER_ASK, params))
    calls, finish = _calls(events)

    assert calls == [] and finish.finish_reason == "length"
    assert "".join(e.text for e in events if isinstance(e, Delta)).startswith("[")
