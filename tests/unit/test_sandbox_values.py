"""The value encoding between host and sandbox: tagged JSON in, plain JSON out."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel

from fleet_rlm.sandbox.bulk import value_file
from fleet_rlm.sandbox.driver import TAG, Record, fresh, load_value, plain, revive
from fleet_rlm.sandbox.values import Unsendable, to_wire


class Item(BaseModel):
    name: str
    when: datetime.date
    tags: set[str]


@dataclasses.dataclass
class Spot:
    x: int
    inner: Item | None = None


class Colour(enum.Enum):
    RED = "red"


Pair = collections.namedtuple("Pair", "left right")


def crossed(value):
    """`value` as the sandbox gets it, both ways the driver reads values."""
    wire, tagged = to_wire(value)
    text = json.dumps(wire)
    inline = revive(json.loads(text)) if tagged else json.loads(text)
    from_file = load_value(text, tagged)
    assert inline == from_file and type(inline) is type(from_file)
    return inline


@pytest.mark.parametrize("value", [
    None, True, 3, 2.5, "text", [1, "a", None], {"k": [1, {"n": None}]},
    (1, (2, "x")), {3, 1}, frozenset({"a"}), b"\x00\xff", bytearray(b"ab"),
    datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    datetime.time(12, 30), datetime.timedelta(days=2, seconds=5, microseconds=7),
    decimal.Decimal("1.10"), uuid.UUID(int=7), 1 + 2j,
    {1: "a", (2, 3): "b", None: "c", 2.5: "d", frozenset({1}): "e"},
    {TAG: "looks like a tag", "v": 1}, [{1, 2}, ({"k": (1,)},)],
])
def test_values_cross_with_their_type(value) -> None:
    got = crossed(value)
    assert got == value and type(got) is type(value)


def test_plain_json_is_not_copied_or_tagged() -> None:
    value = {"rows": [{"n": 1}, {"n": 2}], "name": "x"}
    wire, tagged = to_wire(value)
    assert wire is value and not tagged


def test_models_and_dataclasses_cross_as_records_named_after_their_type() -> None:
    item = Item(name="apple", when=datetime.date(2024, 5, 6), tags={"b", "a"})
    got = crossed([item, Spot(1, item)])
    first, spot = got
    assert isinstance(first, Record) and isinstance(first, dict)
    assert type(first).__name__ == "Item" and type(first).host_type == f"{__name__}.Item"
    assert first == {"name": "apple", "when": datetime.date(2024, 5, 6), "tags": {"a", "b"}}
    assert (first.name, first["when"]) == ("apple", datetime.date(2024, 5, 6))
    assert type(spot).__name__ == "Spot" and spot.x == 1 and spot.inner.name == "apple"
    with pytest.raises(AttributeError, match="Item has no field 'colour'"):
        first.colour  # noqa: B018


def test_enums_named_tuples_and_other_pydantic_types() -> None:
    assert crossed(Colour.RED) == "red"
    pair = crossed(Pair(1, "b"))
    assert pair == (1, "b") and type(pair).__name__ == "Pair" and pair.right == "b"
    assert crossed(Path("/a/b")) == "/a/b"


def test_what_cannot_cross_is_a_clear_error() -> None:
    with pytest.raises(Unsendable, match="cannot hold a value of type object"):
        to_wire({"k": [object()]})
    looped: list = []
    looped.append(looped)
    with pytest.raises(Unsendable, match="nested more than 200 levels deep"):
        to_wire(looped)


def test_an_unknown_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tagged value 'pickle'"):
        revive({TAG: "pickle", "v": "gASV"})


def test_values_leave_the_sandbox_as_plain_json() -> None:
    value = {"s": {3, 1}, "t": (1, [2, (3,)]), 1: "int key", None: "none", (1, 2): "pair",
             "b": b"caf\xc3\xa9", "d": datetime.datetime(2024, 1, 2, 3, 4),
             "dt": datetime.timedelta(seconds=90), "dec": decimal.Decimal("0.5"),
             "r": Record({"x": 1}), "mixed": {1, "a"}}
    out = plain(value)
    assert json.loads(json.dumps(out)) == out
    assert {k: v for k, v in out.items() if k != "mixed"} == {
        "s": [1, 3], "t": [1, [2, [3]]], "1": "int key", "null": "none", "[1, 2]": "pair",
        "b": "café", "d": "2024-01-02T03:04:00", "dt": 90.0, "dec": "0.5", "r": {"x": 1}}
    assert sorted(out["mixed"], key=str) == [1, "a"]
    assert type(out["r"]) is dict
    with pytest.raises(TypeError, match="a object is not plain data"):
        plain([object()])
    assert plain([object], strict=False) == [repr(object)]


def test_long_strings_spill_to_files_the_sandbox_reads_back(tmp_path: Path) -> None:
    written: list[str] = []

    def spill(text: str) -> str:
        path = tmp_path / f"{len(written)}.text"
        path.write_bytes(b"".join(value_file([text.encode()])))
        written.append(text)
        return str(path)

    value = {"a.txt": "a" * 100, "é.txt": "é" * 100, "short": "b", "nested": [("c" * 100, 1)]}
    wire, tagged = to_wire(value, spill, 10)
    assert tagged and written == ["a" * 100, "é" * 100, "c" * 100]
    assert wire["short"] == "b" and wire["a.txt"] == {TAG: "file", "ascii": True,
                                                       "v": str(tmp_path / "0.text")}
    assert wire["é.txt"] == {TAG: "file", "v": str(tmp_path / "1.text")}  # decoded, not mapped
    assert revive(json.loads(json.dumps(wire))) == value


def test_a_fresh_input_shares_its_atoms_and_copies_its_containers() -> None:
    text = "x" * 1000
    kept = {"docs": [text, {"k": bytearray(b"ab")}], "pair": (text, [1]), "atoms": (text, 1),
            "set": {1, 2}, "record": Record({"a": [1]})}
    copy = fresh(kept)
    assert copy == kept
    assert copy["docs"][0] is text and copy["atoms"] is kept["atoms"]
    for path in (("docs",), ("docs", 1), ("docs", 1, "k"), ("pair", 1), ("set",),
                 ("record",), ("record", "a")):
        mine, theirs = copy, kept
        for step in path:
            mine, theirs = mine[step], theirs[step]
        assert mine is not theirs and mine == theirs, path
    assert type(copy["record"]) is Record
