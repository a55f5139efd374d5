from __future__ import annotations

from pathlib import Path

import pytest

from atom_actors.catalog import default_catalog, unavailable_reason
from atom_actors.config import ConfigError, load_config

GOOD = """
[log]
path = "gateway.db"
durability = "normal"

[server]
port = 9000

[[models]]
name = "fast"
provider = "openai"
model = "gpt-4o-mini"
base_url = "http://127.0.0.1:1/v1"
api_key_env = "FAST_KEY"
capabilities = ["text_generation", "summarization"]
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
context_window = 128000
max_concurrency = 32
quality_prior = 0.7

[[models]]
name = "local"
provider = "llamacpp"
model = "gemma"
path = "/models/gemma.gguf"
input_usd_per_mtok = 0
output_usd_per_mtok = 0
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "atom.toml"
    path.write_text(text)
    return str(path)


def test_no_file_gives_the_embedded_defaults() -> None:
    config = load_config(None, local_model_path="/x/gemma.gguf")
    names = [m.name for m in config.models]
    assert names == [
        "gpt-4", "gpt-4-turbo", "claude-3-opus", "claude-3-sonnet", "claude-3-haiku",
        "llama-3-70b", "gemma-3-270m",
    ]  # fmt: skip
    prices = {m.name: (m.input_usd_per_mtok, m.output_usd_per_mtok) for m in config.models}
    assert prices["gpt-4"] == (30.0, 60.0) and prices["claude-3-opus"] == (15.0, 75.0)
    assert prices["claude-3-haiku"] == (0.25, 1.25)
    assert config.db_path == "atom.db" and config.durability == "full"


def test_network_models_need_their_key_and_local_ones_their_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    catalog = {m.name: m for m in default_catalog(str(gguf))}
    assert unavailable_reason(catalog["gpt-4"], {}) == "credentials: OPENAI_API_KEY not set"
    assert unavailable_reason(catalog["gpt-4"], {"OPENAI_API_KEY": "sk"}) is None
    assert unavailable_reason(catalog["claude-3-opus"], {}) == (
        "credentials: ANTHROPIC_API_KEY not set"
    )
    assert "not found" in (unavailable_reason(catalog["gemma-3-270m"], {}) or "")
    gguf.write_bytes(b"GGUF")
    assert unavailable_reason(catalog["gemma-3-270m"], {}) is None


def test_a_valid_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert (config.db_path, config.durability, config.port) == ("gateway.db", "normal", 9000)
    fast, local = config.models
    assert fast.capabilities == {"text_generation", "summarization"}
    assert fast.max_concurrency == 32 and fast.quality_prior == 0.7
    assert local.provider == "llamacpp" and local.capabilities == {"text_generation"}


def test_budgets_and_the_bounds_of_a_models_calls(tmp_path: Path) -> None:
    text = GOOD.replace("[server]", "[budgets]\nreservation_ttl_s = 30\n\n[server]").replace(
        "max_concurrency = 32",
        "max_concurrency = 32\nmax_output_tokens = 300\nmax_image_tokens = 48169",
    )
    config = load_config(write(tmp_path, text))
    assert config.reservation_ttl_s == 30.0
    fast, local = config.models
    assert (fast.max_output_tokens, fast.max_image_tokens) == (300, 48169)
    assert (local.max_output_tokens, local.max_image_tokens) == (4096, None)


def test_the_log_in_postgresql_is_named_by_its_url(tmp_path: Path) -> None:
    url = "postgresql://atom@db.internal/atom"
    config = load_config(write(tmp_path, GOOD.replace('path = "gateway.db"', f'url = "{url}"')))
    assert config.db_path == url


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('provider = "openai"', 'provider = "azure"'), "model 'fast': field 'provider': 'azure'"),
        (('input_usd_per_mtok = 0.15', 'input_usd_per_mtok = -1'),
         "model 'fast': field 'input_usd_per_mtok': must be at least 0"),
        (('"summarization"]', '"poetry"]'), "model 'fast': field 'capabilities': unknown poetry"),
        (('max_concurrency = 32', 'max_concurrency = 2.5'),
         "model 'fast': field 'max_concurrency': expected a whole number"),
        (('quality_prior = 0.7', 'quality_prior = 7'), "model 'fast': field 'quality_prior'"),
        (('context_window = 128000', 'context_windw = 128000'),
         "model 'fast': field 'context_windw': unknown field"),
        (('name = "local"', 'name = "fast"'), "model 'fast': field 'name': defined twice"),
        (('path = "/models/gemma.gguf"\n', ''), "model 'local': field 'path': required"),
        (('durability = "normal"', 'durability = "fast"'), "log: field 'durability'"),
        (('output_usd_per_mtok = 0.6\n', ''), "model 'fast': field 'output_usd_per_mtok': missing"),
        (('path = "gateway.db"', 'url = "gateway.db"'), "log: field 'url': expected a postgresql"),
        (('path = "gateway.db"', 'path = "a.db"\nurl = "postgresql:///atom"'),
         "log: fields 'path' and 'url': give one, not both"),
        (("[server]", "[budgets]\nreservation_ttl_s = 0\n[server]"),
         "budgets: field 'reservation_ttl_s': must be at least 1"),
        (("[server]", "[budgets]\nttl = 5\n[server]"), "budgets: field 'ttl': unknown field"),
        (('max_concurrency = 32', 'max_output_tokens = 0'),
         "model 'fast': field 'max_output_tokens': must be at least 1"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_model_and_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(path)
    assert message in str(info.value)


def test_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[[models]\nname ="))
