"""The population's figures: counters folded from one :class:`PatientResult` at a time (memory does not grow).

A skipped result without a patient id is a file that held no readable patient: it is counted under
``skipped.files``, not as a patient.

Rates are per 100 *evaluated* patients: a skipped patient got no answer, so it cannot count for or against the
alert burden. Every count is an integer in the summary; the rates are derived from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from cds_service.dryrun.results import AGE_BAND_ORDER, EVALUATED, RULES_VERSION_UNKNOWN, PatientResult
from cds_service.engine.vocabulary import EgfrSource, Indicator, MagnesiumCategory, MdsGroup, RecommendationCode

MDS_POINTS = tuple(range(6))  # the score runs from 0 to 5 (clinical-rules.md section 4)
# Ionized magnesium has only these categories (section 2); the serum ones are all of MagnesiumCategory.
IONIZED_CATEGORIES = (
    MagnesiumCategory.LOW,
    MagnesiumCategory.NORMAL,
    MagnesiumCategory.HIGH,
    MagnesiumCategory.UNKNOWN,
)
SKIPS_LISTED = 1000  # skipped patients listed by name in the JSON; beyond that they are only counted by reason


def per_100(count: int, patients: int) -> float:
    """``count`` per 100 patients, to 2 decimals (0 when there are no patients)."""
    return round(100.0 * count / patients, 2) if patients else 0.0


def _ordered(counts: Counter[str], known: Iterable[str]) -> dict[str, int]:
    """The counts of the known values in their order (zeros included), then any other value seen, by name."""
    ordered = {str(value): counts.get(str(value), 0) for value in known}
    ordered.update({key: counts[key] for key in sorted(counts) if key not in ordered})
    return ordered


def _seen_in_order(counts: Counter[str], known: Iterable[str]) -> dict[str, int]:
    """Only the values seen: the known ones in their order, then the others by name."""
    return {key: value for key, value in _ordered(counts, known).items() if value or key in counts}


class Aggregator:
    """Running totals of a dry run."""

    def __init__(self) -> None:
        self.evaluated = 0
        self.skipped = 0
        self.skipped_files = 0
        self.deceased = 0
        self.with_cards = 0
        self.cards = 0
        self.no_magnesium = 0
        self.by_recommendation: Counter[str] = Counter()
        self.patients_by_recommendation: Counter[str] = Counter()
        self.by_indicator: Counter[str] = Counter()
        self.mds_groups: Counter[str] = Counter()
        self.mds_min: Counter[str] = Counter()
        self.mds_max: Counter[str] = Counter()
        self.serum: Counter[str] = Counter()
        self.ionized: Counter[str] = Counter()
        self.egfr_sources: Counter[str] = Counter()
        self.deficiency: Counter[str] = Counter()
        self.age_bands: Counter[str] = Counter()
        self.sexes: Counter[str] = Counter()
        self.rules_versions: Counter[str] = Counter()
        self.skip_reasons: Counter[str] = Counter()
        self.skips_listed: list[dict[str, str]] = []

    def add(self, result: PatientResult) -> None:
        """Count one patient."""
        if result.status != EVALUATED:
            # A file that held no readable patient (not JSON, not a Bundle) is an input problem, not a patient.
            if result.patient_id:
                self.skipped += 1
            else:
                self.skipped_files += 1
            reason = result.reason or "unknown"
            self.skip_reasons[reason] += 1
            if len(self.skips_listed) < SKIPS_LISTED:
                self.skips_listed.append({"id": result.patient_id, "source": result.source, "reason": reason})
            return
        self.evaluated += 1
        self.deceased += result.deceased
        self.cards += len(result.recommendations)
        self.with_cards += bool(result.recommendations)
        self.by_recommendation.update(result.recommendations)
        self.patients_by_recommendation.update(set(result.recommendations))
        self.by_indicator.update(result.indicators)
        self.mds_groups[result.mds_group] += 1
        self.mds_min[str(result.mds_min)] += 1
        self.mds_max[str(result.mds_max)] += 1
        self.serum[result.serum_category] += 1
        self.ionized[result.ionized_category] += 1
        self.egfr_sources[result.egfr_source] += 1
        self.deficiency[result.deficiency] += 1
        self.age_bands[result.age_band] += 1
        self.sexes[result.sex] += 1
        self.rules_versions[result.rules_version] += 1
        self.no_magnesium += not result.magnesium_in_window

    def rules_version(self) -> str:
        """The rules version the engine reported ("unknown" until it does; all of them if they differ)."""
        versions = [v for v in self.rules_versions if v != RULES_VERSION_UNKNOWN] or list(self.rules_versions)
        return ", ".join(sorted(versions)) if versions else RULES_VERSION_UNKNOWN

    def summary(self) -> dict[str, Any]:
        """Every figure of the reports, as JSON-ready data."""
        n = self.evaluated
        recommendations = _seen_in_order(self.by_recommendation, RecommendationCode)
        indicators = _ordered(self.by_indicator, Indicator)
        return {
            "rules_version": self.rules_version(),
            "patients": {
                "seen": n + self.skipped,
                "evaluated": n,
                "skipped": self.skipped,
                "deceased": self.deceased,
                "with_cards": self.with_cards,
                "with_cards_per_100_patients": per_100(self.with_cards, n),
            },
            "skipped": {
                "patients": self.skipped,
                "files": self.skipped_files,
                "by_reason": dict(self.skip_reasons.most_common()),
                "listed": list(self.skips_listed),
            },
            "cards": {
                "total": self.cards,
                "per_100_patients": per_100(self.cards, n),
                "by_recommendation": {
                    code: {
                        "cards": count,
                        "per_100_patients": per_100(count, n),
                        "patients": self.patients_by_recommendation[code],
                    }
                    for code, count in recommendations.items()
                },
                "by_indicator": {
                    name: {"cards": count, "per_100_patients": per_100(count, n)} for name, count in indicators.items()
                },
            },
            "mds": {
                "groups": _ordered(self.mds_groups, MdsGroup),
                "min": _ordered(self.mds_min, (str(p) for p in MDS_POINTS)),
                "max": _ordered(self.mds_max, (str(p) for p in MDS_POINTS)),
            },
            "magnesium": {
                "serum_categories": _ordered(self.serum, MagnesiumCategory),
                "ionized_categories": _ordered(self.ionized, IONIZED_CATEGORIES),
                "no_result_in_window": {
                    "patients": self.no_magnesium,
                    "share": round(self.no_magnesium / n, 4) if n else 0.0,
                },
            },
            "egfr_sources": _ordered(self.egfr_sources, EgfrSource),
            "deficiency": dict(sorted(self.deficiency.items())),
            "age_bands": _ordered(self.age_bands, AGE_BAND_ORDER),
            "sexes": dict(sorted(self.sexes.items())),
        }
