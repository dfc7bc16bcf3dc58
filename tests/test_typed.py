"""Typed answers through the client and %%claude, against the emulator's structured outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from canary import TEST_KEY
from ipshell import fails, loaded_shell, run
from pydantic import BaseModel

from claude_magic.client import Client
from claude_magic.emulator import Emulator
from claude_magic.errors import AnswerInvalid, ConfigError

MODEL = "claude-haiku-5-5"


class Product(BaseModel):
    name: str
    price: float
    currency: str | None = None
    in_stock: bool


@pytest.fixture
def emu(claude_emulator: Emulator) -> Emulator:
    return claude_emulator


@pytest.fixture
def client(emu: Emulator, tmp_path: Path) -> Iterator[Client]:
    c = Client(api_key=TEST_KEY, base_url=emu.url, cache_dir=tmp_path / "cache", max_tokens=200, model=MODEL)
    yield c
    c.close()


def messages(emu: Emulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.path == "/v1/messages"]


def test_a_pydantic_model_gives_a_validated_instance_and_the_api_subset_goes_on_the_wire(
        emu: Emulator, client: Client) -> None:
    reply = client.complete("Extract the product: Aurora headphones, 59 EUR, in stock", schema=Product)
    assert isinstance(reply.parsed, Product)
    assert Product.model_validate_json(reply.text) == reply.parsed  # the text is the JSON itself
    fmt = messages(emu)[-1]["output_config"]["format"]
    assert fmt["type"] == "json_schema" and fmt["schema"]["additionalProperties"] is False
    assert set(fmt["schema"]["required"]) == {"name", "price", "in_stock"}


def test_every_spec_form_parses_to_its_own_kind_of_value(emu: Emulator, client: Client) -> None:
    spec = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    as_dict = client.complete("A product", schema=spec).parsed
    assert isinstance(as_dict, dict) and isinstance(as_dict["name"], str)
    inline = client.complete("A product", schema="name: str, price: float, label: pos|neg").parsed
    assert set(inline) >= {"name", "price", "label"} and inline["label"] in ("pos", "neg")
    tags = client.complete("Three tags", schema=list[str]).parsed
    assert isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    wire = messages(emu)[-1]["output_config"]["format"]["schema"]
    assert wire["type"] == "object" and set(wire["properties"]) == {"value"}  # a list root is wrapped
    label = client.complete("Sentiment", schema=Literal["positive", "negative"]).parsed
    assert label in ("positive", "negative")


def test_the_schema_is_part_of_the_cache_key_and_a_hit_is_parsed_again(
        emu: Emulator, client: Client) -> None:
    first = client.complete("A product", schema=Product)
    again = client.complete("A product", schema=Product)
    assert again.cached and again.parsed == first.parsed
    other = client.complete("A product", schema="name: str")
    assert not other.cached and len(messages(emu)) == 2


def test_an_unusable_answer_is_one_line_with_the_raw_text_and_the_reply(
        emu: Emulator, client: Client) -> None:
    emu.inject("truncate-json")
    with pytest.raises(AnswerInvalid, match=r"cut short by max_tokens.*raise max_tokens") as info:
        client.complete("A product", schema=Product)
    assert info.value.raw and info.value.reply is not None and info.value.reply.stop_reason == "max_tokens"
    with pytest.raises(json.JSONDecodeError):
        json.loads(info.value.raw)
    emu.inject("refusal")
    with pytest.raises(AnswerInvalid, match="a refusal"):
        client.complete("Another product", schema=Product)


def test_a_model_without_structured_outputs_is_refused_before_any_message(
        emu: Emulator, client: Client) -> None:
    with pytest.raises(ConfigError, match="claude-sonnet-5-5 does not support typed answers"):
        client.complete("A product", schema=Product, model="claude-sonnet-5-5")
    assert messages(emu) == []


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_emulator: Emulator) -> Iterator[Any]:
    with loaded_shell(monkeypatch, tmp_path / "cache", "Product", "p", "tags") as shell:
        run(shell, f"%config ClaudeMagics.base_url = {claude_emulator.url!r}")
        run(shell, "%config ClaudeMagics.api_key = 'sk-typed-test'")
        run(shell, f"%config ClaudeMagics.model = {MODEL!r}")
        run(shell, "%config ClaudeMagics.display = 'final'")
        shell.user_ns["Product"] = Product
        yield shell


def test_the_magic_binds_the_validated_object_and_shows_a_table(ip: Any) -> None:
    run(ip, "%%claude --schema Product -o p\nExtract: Brew kettle, 35 EUR, sold out")
    assert isinstance(ip.user_ns["p"], Product)
    assert ip.user_ns["_claude"].text.startswith("{")  # the raw text stays in _claude.text
    shown = ip.display_pub.outputs[-1]["data"]["text/markdown"]
    assert "| field | value |" in shown and "| name |" in shown
    run(ip, '%%claude --schema "name: str, tags: list[str]" -o tags\nTag it')
    assert set(ip.user_ns["tags"]) == {"name", "tags"}


def test_the_magic_refuses_a_bad_spec_in_one_line(ip: Any) -> None:
    error = fails(ip, "%%claude --schema NoSuchModel\nhi")
    assert "--schema NoSuchModel" in str(error) and "\n" not in str(error)
