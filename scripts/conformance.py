#!/usr/bin/env python3
"""Write docs/conformance.md from ../shared/reference/cds-hooks-2.0-requirements.csv and the coverage map below.

Run it again when the map changes: `python3 scripts/conformance.py`. tests/unit/test_conformance_doc.py checks that
every Service row of the CSV is in the table and that every test file named exists.
"""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT.parent / "shared" / "reference" / "cds-hooks-2.0-requirements.csv"
OUT = ROOT / "docs" / "conformance.md"

API = "tests/functional/test_service_api.py"
ORDERS = "tests/functional/test_order_hooks.py"
CARDS = "tests/unit/test_cards.py"
AUTH = "tests/functional/test_auth_http.py"
JWT = "tests/unit/security/test_jwt_auth.py"
E2E = "tests/integration/test_end_to_end.py"
PREFETCH = "tests/unit/fhir/test_client_and_prefetch.py"
AUDIT = "tests/functional/test_audit_trail.py"
OPENAPI = "tests/functional/test_openapi.py"

# requirement id -> (how it is met, test file::test or "n/a: why")
COVERAGE: dict[str, tuple[str, str]] = {
    "1": ("every endpoint reads and writes JSON; non-JSON bodies get 415", f"{API}::test_wrong_media_type_is_415"),
    "2": (
        "TLS is terminated by the hospital's proxy in front of gunicorn; fhirServer must be https outside dev mode",
        "tests/unit/security/test_fhir_allowlist.py (http refused outside dev mode)",
    ),
    "3": (
        "responses are validated and dumped without nulls; an empty cards array is the only empty value",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "4": ("GET /cds-services", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "5": ("discovery needs no authentication and is always mounted", f"{AUTH} (discovery without a JWT)"),
    "6": ('{"services": [...]}', f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "7": ("hook on every service", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "8": ("title on every service", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "9": ("description on every service", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "10": ("id on every service", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "11": (
        "prefetch templates under the six keys of issue 2",
        f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys",
    ),
    "12": (
        "usageRequirements states the data and scopes needed",
        "hooks/base.py USAGE_REQUIREMENTS (shown in discovery)",
    ),
    "13": ("200 on discovery", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "14": (
        "4xx for client errors (400/401/404/412/413/415), 500 only for our own bugs",
        f"{API}::test_invalid_requests_get_400_naming_the_field",
    ),
    "16": (
        "POST {base}/cds-services/{id}",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "27": (
        "measured in the benchmark (bench/, docs/performance.md), not asserted in unit tests",
        "docs/performance.md",
    ),
    "28": (
        "prefetched data is used as sent",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "29": (
        "templates are registered in discovery",
        f"{API}::test_observation_template_asks_for_every_lab_code_newest_first",
    ),
    "34": (
        "prefetch or the FHIR server, same cards",
        f"{API}::test_same_cards_without_prefetch_when_the_fhir_server_is_reachable",
    ),
    "35": (
        "{{context.patientId}} in every template",
        f"{PREFETCH}::test_render_template_fills_context_and_user_tokens",
    ),
    "36": ("one key per template", f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys"),
    "52": (
        "an OperationOutcome under a key is fetched again from the server",
        f"{API}::test_operation_outcome_in_prefetch_is_refetched",
    ),
    "54": ("412 when the Patient cannot be obtained", f"{API}::test_no_prefetch_and_no_reachable_server_is_412"),
    "55": ("tokens delimited by {{ }}", f"{PREFETCH}::test_render_template_refuses_what_the_spec_does_not_allow"),
    "56": (
        "only context paths and the four user tokens",
        f"{PREFETCH}::test_render_template_refuses_what_the_spec_does_not_allow",
    ),
    "57": (
        "only root-level primitive context fields",
        f"{PREFETCH}::test_render_template_refuses_what_the_spec_does_not_allow",
    ),
    "58": (
        "templates use patient reference, token equality, _sort and _count only",
        f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys",
    ),
    "59": ("context.<name> tokens", f"{PREFETCH}::test_render_template_fills_context_and_user_tokens"),
    "60": (
        "missing keys are fetched with the EHR's token",
        f"{API}::test_null_prefetch_key_is_not_fetched_and_missing_key_is",
    ),
    "61": (
        "every FHIR call carries the bearer token",
        f"{API}::test_same_cards_without_prefetch_when_the_fhir_server_is_reachable",
    ),
    "74": ('200 with {"cards": [...]}', f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "75": (
        "systemActions are optional; MgCDS sends none (it never changes the record without a clinician)",
        "n/a: not used",
    ),
    "76": ("4xx/5xx as listed in README", f"{API}::test_unknown_service_is_404"),
    "77": ('nothing actionable: 200 {"cards": []}', f"{ORDERS}::test_hook_library_r4_examples_give_no_cards"),
    "78": ("client behaviour", "n/a: a CDS Client requirement"),
    "80": ("uuid on every card (random UUID)", f"{CARDS}"),
    "81": ("we always send it", f"{CARDS}"),
    "82": (
        "card uuids are the audit log's link to feedback",
        f"{AUDIT}::test_feedback_is_linked_to_the_call_that_issued_the_card",
    ),
    "83": (
        "summary < 140 characters (model max_length 139)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "84": ("detail with the evidence", f"{CARDS}"),
    "85": ("detail is GitHub Flavored Markdown; input text escaped", f"{CARDS}"),
    "87": ("indicator required", f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "88": (
        "info/warning/critical only (model Literal)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "89": ("client behaviour", "n/a: a CDS Client requirement"),
    "90": ("source with label and url", f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "92": (
        "suggestions as an array of suggestion objects",
        f"{ORDERS}::test_draft_omeprazole_without_magnesium_suggests_a_serum_test",
    ),
    "93": (
        "selectionBehavior whenever suggestions exist (model validator)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "94": (
        "cards without suggestions omit the field",
        f"{ORDERS}::test_draft_furosemide_with_low_serum_magnesium_is_a_warning_without_test",
    ),
    "95": ("at-most-one", f"{CARDS}"),
    "96": ("a string, present with suggestions", f"{CARDS}"),
    "98": ("overrideReasons as Codings", f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "99": (
        "four override reasons on every card",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "100": ("display on every reason", f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "103": ("links as an array of link objects (DOIs)", f"{CARDS}"),
    "104": ("links only where sources exist", f"{CARDS}"),
    "105": ("source.label", f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values"),
    "106": ("label is the link text", "n/a: client rendering"),
    "107": ("source.url is absolute (public base URL + /docs/clinical-rules)", f"{CARDS}"),
    "108": ("source.url is sent", f"{CARDS}"),
    "109": ("source.url is not a drill-down (a fixed rules page)", "hooks/pipeline.py SOURCE_PATH"),
    "110": ("drill-down goes in links (DOIs of the sources)", f"{CARDS}"),
    "111": ("no icon is sent", "n/a: icon not used"),
    "112": ("no icon is sent", "n/a: icon not used"),
    "113": ("no icon is sent", "n/a: icon not used"),
    "115": ("no topic is sent", "n/a: topic not used"),
    "116": ("no topic is sent", "n/a: topic not used"),
    "117": ("suggestion label required (model)", f"{CARDS}"),
    "118": ("suggestion uuid always sent (feedback acceptedSuggestions refer to it)", f"{CARDS}"),
    "119": ("uuid is a string", f"{CARDS}"),
    "120": ("isRecommended not sent", "n/a: not used"),
    "121": ("isRecommended not sent", "n/a: not used"),
    "122": ("selectionBehavior is at-most-one", "n/a: not used"),
    "123": ("actions always sent", f"{ORDERS}::test_draft_magnesium_oxide_is_switched_to_citrate_in_one_suggestion"),
    "124": ("actions as an array", f"{ORDERS}::test_draft_magnesium_oxide_is_switched_to_citrate_in_one_suggestion"),
    "125": (
        "a switch is one suggestion with delete + create",
        f"{ORDERS}::test_draft_magnesium_oxide_is_switched_to_citrate_in_one_suggestion",
    ),
    "127": (
        "create/delete only (model Literal)",
        f"{ORDERS}::test_draft_magnesium_oxide_is_switched_to_citrate_in_one_suggestion",
    ),
    "128": (
        "description on every action",
        f"{ORDERS}::test_draft_magnesium_citrate_with_egfr_25_is_contraindicated_with_delete",
    ),
    "129": ("descriptions are written for clinicians", "n/a: client rendering"),
    "130": (
        "resources validated with fhir.resources.R4B before sending",
        f"{ORDERS}::test_draft_omeprazole_without_magnesium_suggests_a_serum_test",
    ),
    "131": (
        "create carries a complete draft resource",
        f"{ORDERS}::test_draft_omeprazole_without_magnesium_suggests_a_serum_test",
    ),
    "132": ("MgCDS sends no update actions", "n/a: update not used"),
    "133": (
        "delete uses resourceId, never resource",
        f"{ORDERS}::test_draft_magnesium_citrate_with_egfr_25_is_contraindicated_with_delete",
    ),
    "134": (
        "delete carries resourceId Type/id",
        f"{ORDERS}::test_draft_magnesium_citrate_with_egfr_25_is_contraindicated_with_delete",
    ),
    "135": (
        "resourceId is a string",
        f"{ORDERS}::test_draft_magnesium_citrate_with_egfr_25_is_contraindicated_with_delete",
    ),
    "136": (
        "display on every override reason",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "138": ("link label required (model)", f"{CARDS}"),
    "139": ("link url required, absolute DOI URLs", f"{CARDS}"),
    "140": ("no deep links", "n/a: not used"),
    "141": ("link type required", f"{CARDS}"),
    "142": ("type absolute", f"{CARDS}"),
    "144": ("appContext not sent", "n/a: no SMART links"),
    "145": ("appContext not sent", "n/a: no SMART links"),
    "146": ("appContext not sent", "n/a: no SMART links"),
    "147": ("absolute links never carry appContext", f"{CARDS}"),
    "148": (
        "POST {base}/cds-services/{id}/feedback, recorded in the audit log",
        f"{API}::test_feedback_list_and_single_object_are_accepted",
    ),
    "168": (
        "HTTPS at the deployment's proxy; outbound FHIR https outside dev mode",
        "tests/unit/security/test_fhir_allowlist.py",
    ),
    "175": ("mutual TLS is the proxy's option", "n/a: deployment choice"),
    "176": ("CDS Hooks JWT verified on every service and feedback call", f"{AUTH}"),
    "177": ("authentication required outside --dev", f"{AUTH}"),
    "179": ("mutual TLS is the proxy's option", "n/a: deployment choice"),
    "195": ("issuer registry with jku allowlist per issuer", f"{JWT}"),
    "199": ("without jku, keys come from the registry's jwks_url or jwks_file (out of band)", f"{JWT}"),
    "200": ("algorithms from RFC 7518, allowlisted", f"{JWT}"),
    "201": ("alg none refused", f"{JWT}"),
    "203": ("HMAC refused (including HS256 signed with the public key)", f"{JWT}"),
    "205": ("ES384 and RS384 by default", f"{JWT}"),
    "206": ("ES256/RS256 can be enabled by configuration", f"{JWT}"),
    "207": ("the allowlist is configuration (MGCDS_JWT_ALGORITHMS)", f"{JWT}"),
    "208": (
        "CORS with configurable origins and preflight answers",
        f"{API}::test_cors_preflight_for_an_allowed_origin",
    ),
    "210": (
        "order-sign does not repeat order-select's card for the same draft",
        f"{ORDERS}::test_order_sign_does_not_repeat_the_card_order_select_showed",
    ),
    "211": (
        "services have distinct ids, one per hook",
        f"{API}::test_discovery_lists_the_three_services_with_exact_prefetch_keys",
    ),
    "212": ("client behaviour", "n/a: a CDS Client requirement"),
    "213": ("patient-view, order-select and order-sign are documented in discovery and README", "README.md"),
    "214": ("extension is a JSON object", f"{CARDS}"),
    "215": ("extension keys in reverse-domain style (org.mgcds.*)", f"{CARDS}"),
    "216": (
        "Coding code required (model)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "217": (
        "Coding system required (model)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "218": (
        "Coding code required (model)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "219": (
        "display required on override reasons (model)",
        f"{API}::test_full_prefetch_returns_valid_cards_without_null_or_empty_values",
    ),
    "220": ("topic not sent", "n/a: topic not used"),
}


def service_rows() -> list[dict[str, str]]:
    """The CSV rows whose actor includes Service."""
    with CSV.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if "Service" in row["actors"]]


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def main() -> None:
    """Write the table."""
    rows = service_rows()
    lines = [
        "# CDS Hooks 2.0 conformance (Service requirements)",
        "",
        "Every row of `../shared/reference/cds-hooks-2.0-requirements.csv` whose actor includes Service, how MgCDS",
        "meets it, and the test that covers it (or why it does not apply). Generated by `scripts/conformance.py`;",
        "`tests/unit/test_conformance_doc.py` keeps it complete.",
        "",
        "| id | level | requirement (abridged) | how | covered by |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        how, test = COVERAGE[row["id"]]
        requirement = _cell(row["requirement"])[:160]
        lines.append(f"| {row['id']} | {row['conformance']} | {requirement} | {_cell(how)} | {_cell(test)} |")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
