"""Finding ingredient names (generic, brand, synonym) in free text: one compiled pattern, built once.

Matching is case-insensitive and on word boundaries, so "magnesium citrate" is found in "Magnesium Citrate
100 MG" but the word "oxide" alone is not magnesium, and "Prilosec OTC 20 mg" is omeprazole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache


def _phrase_pattern(phrase: str) -> str:
    # Any run of spaces, hyphens or slashes in a name matches any other such run ("mag-ox" ~ "mag ox").
    parts = [re.escape(p) for p in re.split(r"[\s\-/]+", phrase.strip()) if p]
    return r"[\s\-/]*".join(parts)


@dataclass(frozen=True)
class NameHit:
    """One name found in a text, and the ingredient it stands for."""

    ingredient: str
    found: str


class NameMatcher:
    """All names of all ingredients, longest first, as one alternation with word boundaries."""

    def __init__(self, names_by_ingredient: Mapping[str, Iterable[str]]) -> None:
        self._ingredient_by_name: dict[str, str] = {}
        for ingredient, names in names_by_ingredient.items():
            for name in names:
                key = self._key(name)
                if key:
                    self._ingredient_by_name.setdefault(key, ingredient)
        ordered = sorted(self._ingredient_by_name, key=len, reverse=True)
        alternation = "|".join(_phrase_pattern(n) for n in ordered)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])", re.IGNORECASE)

    @staticmethod
    def _key(name: str) -> str:
        return " ".join(re.split(r"[\s\-/]+", name.strip().lower()))

    def find(self, text: str | None) -> list[NameHit]:
        """Every ingredient named in ``text``, in order of appearance, each once."""
        if not text:
            return []
        hits: list[NameHit] = []
        seen: set[str] = set()
        for match in self._pattern.finditer(text):
            ingredient = self._ingredient_by_name.get(self._key(match.group(0)))
            if ingredient is not None and ingredient not in seen:
                seen.add(ingredient)
                hits.append(NameHit(ingredient, match.group(0)))
        return hits


@lru_cache(maxsize=4096)
def _phrase_regex(phrase: str) -> re.Pattern[str]:
    # Phrases come from the value sets (a few hundred): build each pattern once, not on every call (performance).
    return re.compile(rf"(?<![a-z0-9]){_phrase_pattern(phrase.lower())}(?![a-z0-9])")


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` on word boundaries, case-insensitively."""
    return _phrase_regex(phrase).search(text.lower()) is not None
