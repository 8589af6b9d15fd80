"""The shared benchmark task record and small helpers used by every generator."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CHARS_PER_TOKEN = 4
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


class Task(BaseModel):
    """One benchmark question over one context. `gold` is a string, or a list for set answers."""

    model_config = ConfigDict(frozen=True)

    id: str
    benchmark: str
    context: str
    question: str
    gold: str | list[str]
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def context_sha256(self) -> str:
        return sha256(self.context)

    @property
    def prompt(self) -> str:
        """Context and question in one string, the way OOLONG's dataset card lays them out."""
        return f"{self.context}\n{self.question}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def approx_tokens(text: str) -> int:
    return round(len(text) / CHARS_PER_TOKEN)


def data_text(name: str) -> str:
    """Read a file shipped in `fleet_rlm/bench/data`."""
    return resources.files("fleet_rlm.bench").joinpath("data", name).read_text(encoding="utf-8")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON-array or parquet file; parquet needs pyarrow or pandas."""
    if path.suffix != ".parquet":
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except ImportError:
        pass
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"Reading {path.name} needs pyarrow or pandas, and neither is "
                          "installed; install one, or convert the file to JSONL.") from None
    return pd.read_parquet(path).to_dict("records")


_EDGE = "\"'`.,;:!?()<>{}|-_ \t\n\u2018\u2019\u201c\u201d"


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, and strip quotes and punctuation at both ends."""
    return " ".join(text.lower().split()).strip(_EDGE)


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y-%m-%d", "%Y/%m/%d", "%m-%d-%Y", "%b %d, %Y",
                 "%B %d, %Y", "%b %d %Y", "%B %d %Y", "%d %B %Y", "%d %b %Y", "%d %B, %Y")
_DATE_SPANS = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/-]\d{1,2}[/-]\d{2,4}|[a-z]{3,9}\.? \d{1,2},? \d{4}"
    r"|\d{1,2} [a-z]{3,9},? \d{4}")


def first_number(text: str) -> float | None:
    """The first number in text, allowing thousands separators ("1,234")."""
    found = _NUMBER.search(text)
    return None if found is None else float(found[0].replace(",", ""))


def parse_date(text: str) -> date | None:
    """A calendar date in any common written form (month first when numeric), or None."""
    clean = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", normalize(text))
    clean = re.sub(r"\bsept\b", "sep", clean)
    for span in (clean, *_DATE_SPANS.findall(clean)):
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(span.replace(".", ""), fmt).date()
            except ValueError:
                continue
    return None


def parse_month_year(text: str) -> tuple[int, int] | None:
    """(year, month) from "May 2023", "2023-05" or "05/2023", or None."""
    clean = normalize(text)
    for word in re.finditer(r"([a-z]{3,9})\.?,? (\d{4})", clean):
        for i, name in enumerate(MONTHS):
            if name.lower().startswith(word[1]):
                return int(word[2]), i + 1
    if ym := re.search(r"\b(\d{4})[-/](\d{1,2})\b", clean):
        return int(ym[1]), int(ym[2])
    if my := re.search(r"\b(\d{1,2})[-/](\d{4})\b", clean):
        return int(my[2]), int(my[1])
    return None
