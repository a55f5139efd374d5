"""Prompt embeddings from the embedded Gemma 3 270M (llama.cpp, mean-pooled), cached on disk.

Computing one takes 0.4-4 s on the 2 shared cores here, so each is appended to a JSONL cache
(`~/.cache/atom/embeddings/<model>.jsonl`, keyed by the prompt's sha256) as soon as it is made:
an interrupted run resumes where it stopped. Run as a script to fill the cache for a dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

CACHE = Path.home() / ".cache" / "atom" / "embeddings"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(model_path: Path) -> Path:
    return CACHE / f"{model_path.stem}-mean.jsonl"


def cached(model_path: Path) -> dict[str, list[float]]:
    """Every embedding in the cache, by the sha256 of its prompt."""
    path = cache_path(model_path)
    if not path.exists():
        return {}
    known = {}
    for line in path.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut short by an interrupted run
        known[record["key"]] = record["embedding"]
    return known


def embed(
    texts: Sequence[str], model_path: Path, threads: int = 1, reverse: bool = False
) -> tuple[list[list[float]], float]:
    """Each text's embedding, computing the missing ones; and the seconds spent computing."""
    known = cached(model_path)
    missing = list(dict.fromkeys(t for t in texts if _key(t) not in known))
    if reverse:  # a second process can fill the cache from the other end
        missing.reverse()
    spent = 0.0
    if missing:
        import llama_cpp

        model = llama_cpp.Llama(
            model_path=str(model_path),
            embedding=True,
            n_ctx=1024,
            n_batch=1024,
            n_ubatch=1024,
            n_threads=threads,
            verbose=False,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        )
        path = cache_path(model_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            for done, text in enumerate(missing, start=1):
                started = time.perf_counter()
                vector = [float(x) for x in model.embed(text)]
                spent += time.perf_counter() - started
                known[_key(text)] = vector
                out.write(orjson.dumps({"key": _key(text), "embedding": vector}) + b"\n")
                out.flush()
                if done % 50 == 0:
                    print(
                        f"{done}/{len(missing)} embedded, {spent / done:.2f} s each",
                        file=sys.stderr,
                    )
    return [known[_key(t)] for t in texts], spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="a recorded dataset whose prompts to embed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverse", action="store_true", help="embed the last prompts first")
    options = parser.parse_args()
    from atom_actors.datasets import load_dataset
    from atom_actors.providers.llamacpp import default_model_path

    prompts = [item.prompt for item in load_dataset(options.dataset).items]
    _, spent = embed(prompts, default_model_path(), options.threads, options.reverse)
    print(orjson.dumps({"prompts": len(prompts), "seconds": round(spent, 1)}).decode())


if __name__ == "__main__":
    main()
