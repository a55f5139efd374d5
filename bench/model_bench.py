"""The local model alone and through its actor, and the cost of one asyncio -> actor hop.

    .venv/bin/python bench/model_bench.py [--tokens 128] [--runs 3] [--hops 5000]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time

import orjson

from atom_actors import bridge
from atom_actors.catalog import default_catalog
from atom_actors.model import GetStatus
from atom_actors.providers import CallParams, Finish, local_threads
from atom_actors.providers._prompt import TRANSCRIPT_STOPS, transcript
from atom_actors.providers.llamacpp import LlamaCppProvider, default_model_path
from atom_actors.system import ActorSystem
from eventstore import SQLiteStore

MESSAGES = [{"role": "user", "content": "Tell me a long story about a dragon who learns to sing."}]


def direct_tps(tokens: int, runs: int, threads: int) -> float:
    """llama-cpp-python alone: its own streamed completion of the same prompt and stops."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(default_model_path()), n_ctx=4096, n_threads=threads, verbose=False
    )
    prompt = transcript(MESSAGES)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        count = 0
        for _chunk in llm.create_completion(
            prompt, max_tokens=tokens, temperature=0.0, stop=list(TRANSCRIPT_STOPS), stream=True
        ):
            count += 1
        rates.append(count / (time.perf_counter() - start))
    llm.close()
    return statistics.median(rates)


def provider_tps(tokens: int, runs: int, threads: int) -> float:
    """ATOM's llama.cpp provider alone, on this thread: the actor's share is what remains."""
    provider = LlamaCppProvider(str(default_model_path()), n_threads=threads)
    params = CallParams(max_tokens=tokens, temperature=0.0)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        *_, finish = provider.generate(MESSAGES, params)
        assert isinstance(finish, Finish)
        assert finish.usage is not None
        rates.append(finish.usage.completion_tokens / (time.perf_counter() - start))
    provider.close()
    return statistics.median(rates)


async def actor_figures(tokens: int, runs: int, hops: int, threads: int) -> dict[str, float]:
    """The same prompt through a ModelActor with every token logged, and trivial round trips."""
    with tempfile.TemporaryDirectory() as d, SQLiteStore(os.path.join(d, "bench.db")) as store:
        (gemma,) = [
            m for m in default_catalog(str(default_model_path())) if m.name == "gemma-3-270m"
        ]
        system = ActorSystem(
            store,
            [gemma],
            factory=lambda spec: LlamaCppProvider(spec.path, name=spec.name, n_threads=threads),
        )
        system.start(asyncio.get_running_loop())
        params = CallParams(max_tokens=tokens, temperature=0.0)
        rates = []
        for i in range(runs):
            start = time.perf_counter()
            result = await system.caller.call("gemma-3-270m", MESSAGES, params, request_id=f"b{i}")
            rates.append(result.completion_tokens / (time.perf_counter() - start))

        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            # The loop's responsiveness while hops are in flight: it must never block.
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - before - 0.001)

        ticking = asyncio.create_task(ticker())
        ref = system.directory.ref("gemma-3-270m")
        samples = []
        for _ in range(hops):
            t0 = time.perf_counter()
            await bridge.ask(ref, lambda reply: GetStatus(reply))
            samples.append(time.perf_counter() - t0)
        stop.set()
        await ticking
        await system.aclose()
    samples.sort()
    return {
        "local_actor_tps": statistics.median(rates),
        "actor_hop_p50_us": samples[len(samples) // 2] * 1e6,
        "actor_hop_p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "loop_max_lag_ms": max(lags) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hops", type=int, default=5000)
    parser.add_argument(
        "--threads", type=int, default=local_threads(), help="llama.cpp threads (ATOM's default)"
    )
    args = parser.parse_args()
    direct = direct_tps(args.tokens, args.runs, args.threads)
    print(f"# local_direct_tps {direct:.1f}", flush=True)
    provider = provider_tps(args.tokens, args.runs, args.threads)
    print(f"# provider_tps {provider:.1f}", flush=True)
    actor = asyncio.run(actor_figures(args.tokens, args.runs, args.hops, args.threads))
    print(f"# {actor}", flush=True)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "max_tokens": args.tokens,
        "threads": args.threads,
        "local_direct_tps": round(direct, 2),
        "local_actor_tps": round(actor["local_actor_tps"], 2),
        "actor_vs_direct": round(actor["local_actor_tps"] / direct, 3),
        "provider_tps": round(provider, 2),
        "actor_vs_provider": round(actor["local_actor_tps"] / provider, 3),
        "actor_hop_p50_us": round(actor["actor_hop_p50_us"], 1),
        "actor_hop_p99_us": round(actor["actor_hop_p99_us"], 1),
        "loop_max_lag_ms": round(actor["loop_max_lag_ms"], 3),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
