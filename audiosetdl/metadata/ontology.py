"""The AudioSet class index (class_labels_indices.csv) and ontology (ontology.json), and class
selection through them: display names or MIDs, descendants, exclusions.

This replaces what people do by hand with grep (`Clapping` -> `/m/0l15bq`, `Gunshot, gunfire`
with its children).
"""

from __future__ import annotations

import csv
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

LABELS_FILENAME = "class_labels_indices.csv"
ONTOLOGY_FILENAME = "ontology.json"


class ClassSelectionError(ValueError):
    """A class name or MID that matches nothing (the message suggests close matches)."""


@dataclass(frozen=True)
class ClassIndex:
    """The 527 labelled classes: MID -> index (the int64 labels of the released TFRecords)."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def load(cls, path: str | Path) -> "ClassIndex":
        path = Path(path)
        mids, names = [], []
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != ["index", "mid", "display_name"]:
                raise ValueError(f"{path}:1: expected header 'index,mid,display_name', found {header!r}")
            for lineno, row in enumerate(reader, 2):
                if len(row) != 3 or not row[0].isdigit() or int(row[0]) != len(mids):
                    raise ValueError(f"{path}:{lineno}: expected '{len(mids)},MID,name', found {row!r}")
                mids.append(row[1])
                names.append(row[2])
        return cls(tuple(mids), tuple(names))

    def __len__(self) -> int:
        return len(self.mids)

    @property
    def index_of(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids)}


@dataclass(frozen=True)
class OntologyEntry:
    mid: str
    name: str
    child_ids: tuple[str, ...]
    restrictions: tuple[str, ...] = ()

    @property
    def abstract(self) -> bool:
        return "abstract" in self.restrictions

    @property
    def blacklisted(self) -> bool:
        return "blacklist" in self.restrictions


@dataclass(frozen=True)
class Ontology:
    entries: dict[str, OntologyEntry]

    @classmethod
    def load(cls, path: str | Path) -> "Ontology":
        path = Path(path)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected a JSON list of ontology entries")
        entries = {}
        for i, item in enumerate(raw):
            try:
                entries[item["id"]] = OntologyEntry(
                    item["id"], item["name"], tuple(item.get("child_ids", ())), tuple(item.get("restrictions", ()))
                )
            except (KeyError, TypeError):
                raise ValueError(f"{path}: entry {i} lacks 'id' or 'name'") from None
        return cls(entries)

    def descendants(self, mid: str) -> list[str]:
        """`mid`'s children, grandchildren, ... (each once; the ontology is a DAG)."""
        seen: list[str] = []
        stack = list(reversed(self.entries[mid].child_ids)) if mid in self.entries else []
        while stack:
            child = stack.pop()
            if child in seen or child == mid:
                continue
            seen.append(child)
            if child in self.entries:
                stack.extend(reversed(self.entries[child].child_ids))
        return seen


@dataclass
class ClassSelection:
    """The MIDs a plan keeps (`include`, None = every class) and drops (`exclude`), plus notes
    for the user (abstract or blacklisted classes, classes with no labelled segments)."""

    include: frozenset[str] | None
    exclude: frozenset[str]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "include": sorted(self.include) if self.include is not None else None,
            "exclude": sorted(self.exclude),
        }


def _name_table(index: ClassIndex | None, ontology: Ontology | None) -> dict[str, str]:
    """lower-case display name or MID -> MID."""
    table: dict[str, str] = {}
    if ontology is not None:
        for entry in ontology.entries.values():
            table[entry.name.lower()] = entry.mid
            table[entry.mid.lower()] = entry.mid
    if index is not None:
        for mid, name in zip(index.mids, index.names):
            table[name.lower()] = mid
            table[mid.lower()] = mid
    return table


def resolve_class(query: str, table: dict[str, str], display: dict[str, str]) -> str:
    """One display name or MID (case-insensitive, exact) -> its MID, or a 'did you mean' error."""
    mid = table.get(query.strip().lower())
    if mid is not None:
        return mid
    names = sorted({display[m] for m in table.values() if m in display})
    close = difflib.get_close_matches(query, names, n=3, cutoff=0.6)
    close += [n for n in names if query.lower() in n.lower() and n not in close][: 5 - len(close)]
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise ClassSelectionError(f"unknown class {query!r} (not a display name or MID in the ontology).{hint}")


def select_classes(
    classes: Iterable[str],
    exclude_classes: Iterable[str] = (),
    *,
    index: ClassIndex | None,
    ontology: Ontology | None,
    with_descendants: bool = False,
) -> ClassSelection:
    """Resolve `--classes` / `--exclude-classes` into MIDs.

    A segment is kept when it carries at least one included label (every segment when
    `classes` is empty) and none of the excluded ones. `with_descendants` expands both lists
    through the ontology's child_ids.
    """
    classes, exclude_classes = list(classes), list(exclude_classes)
    if not classes and not exclude_classes:
        return ClassSelection(None, frozenset())
    if with_descendants and ontology is None:
        raise ClassSelectionError("--with-descendants needs the ontology (ontology.json): run `audiosetdl fetch-metadata DIR`")
    table = _name_table(index, ontology)
    if not table:
        raise ClassSelectionError("class selection needs class_labels_indices.csv or ontology.json: run `audiosetdl fetch-metadata DIR`")
    display: dict[str, str] = {}  # MID -> display name
    if ontology is not None:
        display.update({e.mid: e.name for e in ontology.entries.values()})
    if index is not None:
        display.update(zip(index.mids, index.names))
    labelled = set(index.mids) if index is not None else None
    notes: list[str] = []

    def expand(queries: list[str]) -> set[str]:
        mids: set[str] = set()
        for query in queries:
            mid = resolve_class(query, table, display)
            group = [mid] + (ontology.descendants(mid) if with_descendants else [])
            mids.update(group)
            entry = ontology.entries.get(mid) if ontology is not None else None
            if entry is not None and entry.abstract:
                notes.append(f"{entry.name!r} ({mid}) is abstract: segments rarely carry it"
                             + ("" if with_descendants else "; add --with-descendants to include its children"))
            if entry is not None and entry.blacklisted:
                notes.append(f"{entry.name!r} ({mid}) is blacklisted in the ontology (obscure or confusing)")
        return mids

    include = expand(classes) if classes else None
    exclude = expand(exclude_classes)
    if include is not None:
        include -= exclude
        if labelled is not None:
            unlabelled = sorted(include - labelled)
            if unlabelled:
                notes.append(
                    f"{len(unlabelled)} selected class(es) have no labelled segments in AudioSet: "
                    + ", ".join(f"{display.get(m, m)!r}" for m in unlabelled[:10])
                    + (" ..." if len(unlabelled) > 10 else "")
                )
        if not include:
            raise ClassSelectionError("the class selection is empty after exclusions")
    return ClassSelection(frozenset(include) if include is not None else None, frozenset(exclude), notes)
