"""Order-sign does not repeat what order-select showed: decided on recommendations, before cards are built."""

from __future__ import annotations

from typing import Any

from cds_service.cdshooks import OrderSelectRequest, OrderSignRequest
from cds_service.engine.recommend.types import Recommendation
from cds_service.engine.vocabulary import Indicator, RecommendationCode
from hooks import build_registry
from hooks.orders import TtlOrderSession, drop_already_shown, remember_shown
from terminology import default_terminology
from tests.functional.conftest import load_example
from tests.unit.engine.builders import med
from tests.unit.hooks.support import hook_deps

DRAFT = "MedicationRequest/draft-mg-oxide"  # the draft of examples/order-sign-request.json


def _select_of_sign_example() -> dict[str, Any]:
    body = load_example("order-sign-request.json")
    body["hook"] = "order-select"
    body["context"]["selections"] = [DRAFT]
    return body


def test_order_sign_drops_what_order_select_showed_and_says_so_in_the_assessment() -> None:
    registry = build_registry(default_terminology().observation_search_codes())
    select, sign = registry.get("mg-order-select"), registry.get("mg-order-sign")
    assert select is not None
    assert sign is not None
    deps = hook_deps()
    # clinical-rules.md section 8: a draft of an inorganic salt (magnesium oxide) -> switch-to-organic.
    first = sign.handle(OrderSignRequest.model_validate(load_example("order-sign-request.json")), hook_deps())
    assert [r.code for r in first.recommendations] == [RecommendationCode.SWITCH_TO_ORGANIC]

    shown = select.handle(OrderSelectRequest.model_validate(_select_of_sign_example()), deps)
    assert [r.code for r in shown.recommendations] == [RecommendationCode.SWITCH_TO_ORGANIC]
    assert [r.draft_reference for r in shown.recommendations] == [DRAFT]

    again = sign.handle(OrderSignRequest.model_validate(load_example("order-sign-request.json")), deps)
    assert again.cards == []
    assert again.recommendations == ()
    assert again.assessment is not None
    assert again.assessment["recommendations"] == []


def _recommendation(code: RecommendationCode, draft_id: str | None) -> Recommendation:
    draft = med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True, rid=draft_id) if draft_id else None
    return Recommendation(code, Indicator.INFO, concerned_draft=draft)


def test_the_session_is_keyed_by_patient_draft_and_code() -> None:
    session = TtlOrderSession(60)
    shown = _recommendation(RecommendationCode.ORDER_DEPLETES_MG, "d1")
    remember_shown(session, "p1", [shown])
    same = _recommendation(RecommendationCode.ORDER_DEPLETES_MG, "d1")
    other_draft = _recommendation(RecommendationCode.ORDER_DEPLETES_MG, "d2")
    other_code = _recommendation(RecommendationCode.ORDER_SPACING, "d1")
    no_draft = _recommendation(RecommendationCode.TEST_SERUM_MG, None)
    candidates = [same, other_draft, other_code, no_draft]
    assert drop_already_shown(session, "p1", candidates) == (other_draft, other_code, no_draft)
    assert drop_already_shown(session, "p2", candidates) == tuple(candidates)
