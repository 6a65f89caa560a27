"""The hook side of suppression after feedback (clinical-rules.md 7.5), without HTTP: which recommendations are held
back, when a newer result ends it, and the 24-hour cap checked against both the answered and the new card."""

from __future__ import annotations

from datetime import timedelta

from cds_service.audit.suppression import InMemorySuppressionSource
from cds_service.engine.recommend.types import Recommendation
from cds_service.engine.vocabulary import Indicator, RecommendationCode
from cds_service.interfaces import Suppression
from hooks.suppression import CallerSuppressions, apply_suppressions
from tests.unit.engine.builders import NOW, facts, lab

HYPER = RecommendationCode.EVALUATE_HYPERMAGNESEMIA
TEST = RecommendationCode.TEST_SERUM_MG


def _suppression(code: str, hours_ago: float, days: int, indicator: str = "warning") -> Suppression:
    answered = NOW - timedelta(hours=hours_ago)
    return Suppression(
        code, "fb-1", "overridden", "patient-declined", answered, answered + timedelta(days=days), indicator
    )


def _source(*held: Suppression, issuer: str = "iss") -> CallerSuppressions:
    source = InMemorySuppressionSource()
    for s in held:
        source.add(issuer, None, "p1", s)
    return CallerSuppressions(source, "iss", None)


def test_a_warning_answered_is_capped_at_24_hours_when_the_card_is_now_critical() -> None:
    # Answered 30 h ago as a warning (180 days); today the same code is critical (severe-high): 24 h at most.
    held = _source(_suppression(HYPER, hours_ago=30, days=180))
    critical = Recommendation(HYPER, Indicator.CRITICAL)
    shown, suppressed = apply_suppressions([critical], facts(), held, NOW)
    assert shown == (critical,)
    assert suppressed == ()
    warning = Recommendation(HYPER, Indicator.WARNING)
    shown, suppressed = apply_suppressions([warning], facts(), held, NOW)
    assert shown == ()
    assert [s.code for s in suppressed] == [HYPER]


def test_only_the_suppressed_code_is_held_and_a_newer_result_ends_it() -> None:
    held = _source(_suppression(TEST, hours_ago=48, days=30))
    recs = [Recommendation(TEST, Indicator.INFO), Recommendation(RecommendationCode.TEST_IONIZED_MG, Indicator.INFO)]
    shown, _ = apply_suppressions(recs, facts(labs=(lab("egfr", 55, days_ago=5),)), held, NOW)
    assert [r.code for r in shown] == [RecommendationCode.TEST_IONIZED_MG]
    # An eGFR drawn a day ago, after the feedback of two days ago: the picture changed.
    shown, suppressed = apply_suppressions(recs, facts(labs=(lab("egfr", 55, days_ago=1),)), held, NOW)
    assert [r.code for r in shown] == [TEST, RecommendationCode.TEST_IONIZED_MG]
    assert suppressed == ()


def test_another_issuers_feedback_does_not_count() -> None:
    held = _source(_suppression(TEST, hours_ago=1, days=30), issuer="other")
    shown, _ = apply_suppressions([Recommendation(TEST, Indicator.INFO)], facts(), held, NOW)
    assert len(shown) == 1


def test_a_store_that_raises_suppresses_nothing() -> None:
    class Broken:
        def active(self, *args: object) -> list[Suppression]:
            raise RuntimeError("down")

    shown, suppressed = apply_suppressions(
        [Recommendation(TEST, Indicator.INFO)], facts(), CallerSuppressions(Broken(), "iss", None), NOW
    )
    assert len(shown) == 1
    assert suppressed == ()
