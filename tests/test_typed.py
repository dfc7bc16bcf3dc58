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


# -- typed answers over rows --------------------------------------------------------------------------


def descriptions() -> Any:
    import pandas as pd

    return pd.DataFrame({"text": ["Aurora headphones, 59 EUR", "Brew kettle, 35 EUR", "Desk lamp, 20 USD",
                                  "Aurora headphones, 59 EUR"]}, index=[10, 11, 12, 13])


def test_run_batch_with_a_schema_gives_validated_objects_and_typed_columns(
        emu: Emulator, client: Client) -> None:
    from claude_magic.batch import run_batch

    result = run_batch("Extract: {text}", descriptions(), client=client, schema=Product)
    assert all(isinstance(p, Product) for p in result.series) and len(messages(emu)) == 3  # deduped
    columns = result.columns()
    assert list(columns) == ["name", "price", "currency", "in_stock"]
    assert (str(columns["name"].dtype), str(columns["price"].dtype), str(columns["in_stock"].dtype)) == (
        "string", "Float64", "boolean")
    assert columns["price"].index.tolist() == [10, 11, 12, 13]
    assert columns["price"][10] == result.series[10].price
    assert list(result.columns("p_")) == ["p_name", "p_price", "p_currency", "p_in_stock"]


def test_an_unusable_row_is_that_rows_error_with_its_text_and_is_not_paid_for_twice(
        emu: Emulator, client: Client) -> None:
    from claude_magic.batch import run_batch

    emu.inject("truncate-json")
    df = descriptions()
    result = run_batch("Extract: {text}", df, client=client, schema=Product, concurrency=1)
    assert result.series.isna().sum() == 2 and result.summary.failed_rows == 2  # its two rows
    assert set(result.errors["type"]) == {"AnswerInvalid"} and result.aborted is None
    assert result.summary.cost and result.summary.cost > 0  # the truncated answer was paid for, and counted
    sent = len(messages(emu))
    again = run_batch("Extract: {text}", df, client=client, schema=Product)
    assert len(messages(emu)) == sent and again.summary.failed_rows == 2  # reported again, from the cache


@pytest.fixture
def frames_ip(ip: Any) -> Iterator[Any]:
    ip.user_ns["df"] = descriptions()
    yield ip
    for name in ("df", "pldf", "_claude_batch"):
        ip.user_ns.pop(name, None)


def test_the_batch_magic_writes_every_field_or_the_chosen_ones_or_the_objects(frames_ip: Any) -> None:
    ip = frames_ip
    run(ip, '%claude_batch df.text "Extract: {text}" --schema Product -o df')
    df = ip.user_ns["df"]
    assert list(df.columns) == ["text", "name", "price", "currency", "in_stock"]
    assert str(df["price"].dtype) == "Float64" and df["price"].notna().all()
    error = fails(ip, '%claude_batch df.text "Extract: {text}" --schema Product -o df')  # name is taken now
    assert "would overwrite df's own columns" in str(error) and "--column-prefix" in str(error)
    run(ip, '%claude_batch df.text "Extract: {text}" --schema Product -o df --column-prefix p_')
    assert {"p_name", "p_price"} <= set(ip.user_ns["df"].columns)
    run(ip, '%claude_batch df.text "Again: {text}" --schema Product -o df[["name", "in_stock"]]')
    run(ip, '%claude_batch df.text "Extract: {text}" --schema Product -o df.product')
    assert isinstance(ip.user_ns["df"]["product"][10], Product)
    error = fails(ip, '%claude_batch df.text "x {text}" --schema Product -o df[["nme"]]')
    assert "'nme' not in Product's fields (name, price, currency, in_stock)" in str(error)


def test_a_polars_frame_gets_typed_columns_on_a_rebound_copy(frames_ip: Any) -> None:
    import polars as pl

    ip = frames_ip
    ip.user_ns["pldf"] = pl.from_pandas(ip.user_ns["df"].reset_index(drop=True))
    spec = '"name: str, price: float, label: cheap|dear"'
    run(ip, f'%claude_batch pldf "Extract: {{text}}" --schema {spec} -o pldf')
    pldf = ip.user_ns["pldf"]
    assert pldf.columns == ["text", "name", "price", "label"]
    assert pldf.schema["price"] == pl.Float64 and pldf.schema["label"] == pl.Categorical


def test_a_dry_run_counts_the_schema_and_the_batches_api_carries_it(emu: Emulator, client: Client) -> None:
    from claude_magic.batch import run_batch

    df = descriptions()
    plain = run_batch("Extract: {text}", df, client=client, dry_run=True).dry_run
    typed = run_batch("Extract: {text}", df, client=client, schema=Product, dry_run=True).dry_run
    assert plain is not None and typed is not None
    assert typed.input_tokens > plain.input_tokens  # the schema (and the system prompt it brings) is counted
    result = run_batch("Extract: {text}", df, client=client, schema=Product, api="batch", poll_interval=0.05)
    assert all(isinstance(p, Product) for p in result.series) and result.summary.api == "batch"
    (created,) = [r.json for r in emu.requests if r.method == "POST" and r.path == "/v1/messages/batches"]
    formats = [req["params"]["output_config"]["format"]["type"] for req in created["requests"]]
    assert formats == ["json_schema"] * 3


def test_an_arrow_table_gets_typed_columns_and_dates_are_temporal(frames_ip: Any) -> None:
    import pyarrow as pa

    ip = frames_ip
    ip.user_ns["tbl"] = pa.table({"text": ip.user_ns["df"]["text"].tolist()})
    run(ip, '%claude_batch tbl "Extract: {text}" --schema "name: str, stock: int?, listed: date" -o tbl')
    tbl = ip.user_ns.pop("tbl")
    assert tbl.column_names == ["text", "name", "stock", "listed"]
    types = (str(tbl.schema.field("stock").type), str(tbl.schema.field("listed").type))
    assert types == ("int64", "date32[day]")
    run(ip, '%claude_batch df.text "Extract: {text}" --schema "name: str, listed: date" -o df')
    assert str(ip.user_ns["df"]["listed"].dtype).startswith("datetime64")
