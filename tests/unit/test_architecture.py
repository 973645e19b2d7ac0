"""The rules the code cites exist in ARCHITECTURE.md, and the linters' config agrees with it.

A comment saying "design rule 6" or "Rule one-session" is only useful if a newcomer can look
the rule up: these tests fail when a citation points at a rule that is not there, and when
an import-linter contract or a banned-api message names a rule or contract the document
does not describe.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "ARCHITECTURE.md"
SCANNED = ("bot", "handlers", "tests", "bench", "migrations")

_HEADING_RE = re.compile(r"^### Rule (\d+) · ([a-z]+(?:-[a-z]+)+)$", re.M)
# "rule 6", "design rule 6", "house rule 6" (any case) and "Rule one-session".
_NUMBER_CITE_RE = re.compile(r"\b(?:design |house )?rules? (\d+)\b", re.I)
_NAME_CITE_RE = re.compile(r"\bRule ([a-z]+(?:-[a-z]+)+)\b")


def _rules() -> dict[int, str]:
    found = _HEADING_RE.findall(DOC.read_text(encoding="utf-8"))
    rules = {int(n): name for n, name in found}
    assert len(rules) == len(found), "two rules share a number"
    assert len(set(rules.values())) == len(rules), "two rules share a name"
    return rules


def _citations() -> list[tuple[str, int, str]]:
    """(file, line, cited rule) for every citation in the code, tests and config."""
    files = [p for d in SCANNED for p in (ROOT / d).rglob("*.py")]
    files += [ROOT / "pyproject.toml"]
    out: list[tuple[str, int, str]] = []
    for path in files:
        if path == Path(__file__).resolve():
            continue  # this file's docstring shows the citation forms as examples
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = str(path.relative_to(ROOT))
            out += [(where, i, m.group(1)) for m in _NUMBER_CITE_RE.finditer(line)]
            out += [(where, i, m.group(1)) for m in _NAME_CITE_RE.finditer(line)]
    return out


def test_the_rules_are_numbered_one_to_n_with_a_name_each() -> None:
    rules = _rules()
    assert sorted(rules) == list(range(1, len(rules) + 1))
    # The first fourteen keep the numbers the code has cited since the design notes.
    assert rules[1] == "one-way-imports" and rules[6] == "one-session"
    assert rules[8] == "migrations-only" and rules[14] == "no-guessing"


def test_every_rule_the_code_cites_exists() -> None:
    rules = _rules()
    known = {str(n) for n in rules} | set(rules.values())
    cites = _citations()
    assert len(cites) >= 10  # the scan sees the citations (a broken regex would see none)
    missing = [c for c in cites if c[2] not in known]
    assert not missing, f"citations of rules ARCHITECTURE.md does not have: {missing}"


def test_the_import_contracts_are_the_ones_the_document_describes() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ids = {c["id"] for c in config["tool"]["importlinter"]["contracts"]}
    doc = DOC.read_text(encoding="utf-8")
    described = set(re.findall(r"^\| `([a-z-]+)` \|", doc, re.M))
    assert ids == described
    # The composition roots may meet Telegram; nothing else in bot/ is excused.
    one_way = next(c for c in config["tool"]["importlinter"]["contracts"]
                   if c["id"] == "one-way-imports")
    importers = {i.split(" -> ")[0] for i in one_way["ignore_imports"]}
    assert importers == {"bot.__main__", "bot.sandbox.runner"}
