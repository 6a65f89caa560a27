"""A synthetic population for `mgcds dry-run`: varied patients written as FHIR Bundles or a Bulk FHIR NDJSON export.

    .venv/bin/python bench/population.py --patients 10000 --ndjson /tmp/pop-ndjson
    .venv/bin/python bench/population.py --patients 200 --bundles /tmp/pop-bundles --bundle-type collection

Deterministic for a seed. Nobody real: names are left out, ids are ``gen-<seed>-<n>``. What varies, so that every
branch the rules read is exercised at population scale:

- ages from newborns to 104 (children and the very old on purpose), birth dates full, year-only or missing; sexes
  male, female, other, unknown or missing; some patients deceased (by date or flag);
- drugs from the project's own value sets (``terminology/valuesets``, so the generator follows the terminology):
  loop, thiazide and potassium-sparing diuretics, PPIs, magnesium products of every kind (organic and inorganic
  supplements, laxatives and antacids, intravenous), interacting drugs (tetracyclines, quinolones,
  bisphosphonates, ...), other magnesium-wasting drugs, text-only and unknown codes, Medication references;
  MedicationRequest and MedicationStatement, active or not;
- labs: serum magnesium in every category and in mg/dL, mmol/L, mEq/L and mg/L, ionized magnesium with and
  without a reference range, creatinine in mg/dL and umol/L, eGFR under several LOINC codes and both units,
  AUDIT-C answers and drinks per day, results inside and outside the windows, entered-in-error, preliminary and
  "<" results; pending lab orders; alcohol use disorder Conditions;
- missing data: patients with no labs, no medications, or nothing at all.

NDJSON: one file per resource type, Observations and MedicationRequests split over two parts each, and lines
shuffled within a window, so that one patient's resources are spread over several files in no particular order.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
VALUESETS = ROOT / "terminology" / "valuesets"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
DEFAULT_NOW = "2026-11-21T12:00:00+00:00"
SHUFFLE_WINDOW = 256
# Magnesium: mmol/L per unit (clinical-rules.md section 2), to write one value in the unit drawn.
MG_PER_UNIT = {"mg/dL": 0.4114, "mmol/L": 1.0, "meq/L": 0.5, "mg/L": 0.04114}
# A serum value (mmol/L) in each category, from severe-low to high.
SERUM_RANGES = ((0.30, 0.49), (0.50, 0.69), (0.70, 0.84), (0.85, 1.05), (1.06, 1.60))


def _rxnorm_products(name: str) -> list[tuple[str, str, str | None]]:
    """(code, display, magnesium product kind) of the RxNorm concepts of one value set file."""
    data = json.loads((VALUESETS / f"{name}.json").read_text(encoding="utf-8"))
    found = []
    for include in data["compose"]["include"]:
        if include.get("system") != RXNORM:
            continue
        for concept in include.get("concept", []):
            extensions = {e["url"].rsplit("/", 1)[-1]: e for e in concept.get("extension", [])}
            kind = extensions.get("mg-product-kind", {}).get("valueCode")
            found.append((concept["code"], concept.get("display", concept["code"]), kind))
    return found


class Catalogue:
    """The drugs the generator draws from, by what they are for the rules."""

    def __init__(self) -> None:
        self.diuretics = [
            *_rxnorm_products("drugs-loop-diuretic"),
            *_rxnorm_products("drugs-thiazide-diuretic"),
            *_rxnorm_products("drugs-potassium-sparing-diuretic"),
        ]
        self.ppis = _rxnorm_products("drugs-proton-pump-inhibitor")
        magnesium = [*_rxnorm_products("drugs-mg-salt-organic"), *_rxnorm_products("drugs-mg-salt-inorganic")]
        self.magnesium_by_kind: dict[str, list[tuple[str, str, str | None]]] = {}
        for product in magnesium:
            self.magnesium_by_kind.setdefault(product[2] or "ingredient", []).append(product)
        self.interacting = [
            product
            for name in (
                "drugs-interacts-tetracycline",
                "drugs-interacts-fluoroquinolone",
                "drugs-interacts-bisphosphonate",
                "drugs-interacts-levothyroxine",
                "drugs-interacts-integrase-inhibitor",
                "drugs-interacts-gabapentin",
                "drugs-interacts-eltrombopag",
            )
            for product in _rxnorm_products(name)
        ]
        self.wasting = [
            *_rxnorm_products("drugs-mg-wasting-other"),
            *_rxnorm_products("drugs-carbonic-anhydrase-inhibitor"),
        ]


class PatientMaker:
    """Makes one patient's resources at a time (a list: Patient first)."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.now = now
        self.drugs = Catalogue()

    # -- small helpers ------------------------------------------------------------------------------------------

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _when(self, newest_days: float, oldest_days: float) -> str:
        days = self.rng.uniform(newest_days, oldest_days)
        return (self.now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _recent_or_stale(self, window_days: int) -> str:
        # Mostly inside the window, some just outside it (stale), a few far outside.
        roll = self.rng.random()
        if roll < 0.75:
            return self._when(0.1, window_days - 1)
        if roll < 0.92:
            return self._when(window_days + 1, window_days * 2)
        return self._when(window_days * 3, window_days * 10)

    # -- the patient --------------------------------------------------------------------------------------------

    def patient(self, number: int) -> list[dict[str, Any]]:
        """One patient and all its resources."""
        rng = self.rng
        patient_id = f"gen-{self.seed}-{number}"
        ref = {"reference": f"Patient/{patient_id}"}
        patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
        roll = rng.random()
        age = rng.uniform(0, 17.9) if roll < 0.10 else rng.uniform(90, 104) if roll < 0.16 else rng.uniform(18, 89.9)
        born = self.now - timedelta(days=age * 365.25)
        precision = rng.random()
        if precision < 0.95:
            patient["birthDate"] = born.strftime("%Y-%m-%d")
        elif precision < 0.98:
            patient["birthDate"] = born.strftime("%Y")
        gender = rng.choices(["male", "female", "other", "unknown", None], weights=[47, 47, 2, 2, 2])[0]
        if gender is not None:
            patient["gender"] = gender
        deceased = rng.random()
        if deceased < 0.03:
            patient["deceasedDateTime"] = self._when(1, 400)
        elif deceased < 0.04:
            patient["deceasedBoolean"] = True
        resources: list[dict[str, Any]] = [patient]
        if self._chance(0.08):
            return resources  # nothing known but the patient: missing data at its most
        if self._chance(0.85):
            resources.extend(self._medications(ref, patient_id))
        if self._chance(0.85):
            resources.extend(self._labs(ref))
        if self._chance(0.03):
            code = rng.choice(["66590003", "15167005", "7200002"])
            resources.append(
                {
                    "resourceType": "Condition",
                    "id": f"{patient_id}-cond",
                    "subject": ref,
                    "clinicalStatus": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                        ]
                    },
                    "code": {"coding": [{"system": SNOMED, "code": code}]},
                }
            )
        for index, (chance, loinc) in enumerate(((0.05, "19123-9"), (0.02, "73573-8"))):
            if self._chance(chance):
                resources.append(
                    {
                        "resourceType": "ServiceRequest",
                        "id": f"{patient_id}-sr{index}",
                        "status": rng.choice(["active", "active", "draft", "completed"]),
                        "intent": "order",
                        "subject": ref,
                        "code": {"coding": [{"system": LOINC, "code": loinc}]},
                        "authoredOn": self._when(0, 20),
                    }
                )
        return resources

    def _medications(self, ref: dict[str, str], patient_id: str) -> Iterator[dict[str, Any]]:
        rng = self.rng
        drugs = self.drugs
        picks: list[tuple[str, str, str | None]] = []
        for chance, pool in (
            (0.30, drugs.diuretics),
            (0.30, drugs.ppis),
            (0.10, drugs.interacting),
            (0.05, drugs.wasting),
        ):
            if self._chance(chance):
                picks.append(rng.choice(pool))
        if self._chance(0.18):
            kind = rng.choice(sorted(drugs.magnesium_by_kind))
            picks.append(rng.choice(drugs.magnesium_by_kind[kind]))
        for index, (code, display, kind) in enumerate(picks):
            resource_type = "MedicationRequest" if self._chance(0.65) else "MedicationStatement"
            status_pool = ["active"] * 8 + (
                ["stopped", "completed", "entered-in-error"]
                if resource_type == "MedicationRequest"
                else ["completed", "stopped", "intended"]
            )
            resource: dict[str, Any] = {
                "resourceType": resource_type,
                "id": f"{patient_id}-med{index}",
                "status": rng.choice(status_pool),
                "subject": ref,
            }
            concept = {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}
            if self._chance(0.05):
                medication_id = f"{patient_id}-medication{index}"
                resource["medicationReference"] = {"reference": f"Medication/{medication_id}"}
                yield {"resourceType": "Medication", "id": medication_id, "code": concept}
            elif self._chance(0.04):
                resource["medicationCodeableConcept"] = {"text": display}  # text only: recognised by name
            else:
                resource["medicationCodeableConcept"] = concept
            if resource_type == "MedicationRequest":
                resource["intent"] = "order"
                resource["authoredOn"] = self._when(1, 400)
                if kind == "parenteral" or (kind is None and "Injection" in display):
                    resource["dosageInstruction"] = [
                        {"route": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}}
                    ]
            else:
                resource["effectivePeriod"] = {"start": self._when(30, 700)}
            yield resource
        if self._chance(0.03):
            yield {
                "resourceType": "MedicationRequest",
                "id": f"{patient_id}-unknown",
                "status": "active",
                "intent": "order",
                "subject": ref,
                "medicationCodeableConcept": {
                    "coding": [{"system": "urn:local:drugs", "code": "X-41"}],
                    "text": "Tab 41",
                },
            }

    def _observation(self, ref: dict[str, str], code: str, when: str, **value: Any) -> dict[str, Any]:
        status = "final"
        roll = self.rng.random()
        if roll < 0.02:
            status = "entered-in-error"
        elif roll < 0.05:
            status = "preliminary"
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "status": status,
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": ref,
            "effectiveDateTime": when,
        }
        observation.update(value)
        return observation

    def _quantity(self, value: float, unit: str, comparator: str | None = None) -> dict[str, Any]:
        quantity: dict[str, Any] = {"value": round(value, 3), "unit": unit, "system": UCUM, "code": unit}
        if comparator:
            quantity["comparator"] = comparator
        return {"valueQuantity": quantity}

    def _labs(self, ref: dict[str, str]) -> Iterator[dict[str, Any]]:
        rng = self.rng
        if self._chance(0.55):
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                low, high = rng.choice(SERUM_RANGES)
                unit = rng.choices(list(MG_PER_UNIT), weights=[60, 25, 10, 5])[0]
                code = "2601-3" if unit in ("mmol/L", "meq/L") else "19123-9"
                comparator = "<" if self._chance(0.01) else None
                value = rng.uniform(low, high) / MG_PER_UNIT[unit]
                yield self._observation(ref, code, self._recent_or_stale(90), **self._quantity(value, unit, comparator))
        if self._chance(0.10):
            extra: dict[str, Any] = self._quantity(rng.uniform(0.35, 0.75), "mmol/L")
            if self._chance(0.5):
                extra["referenceRange"] = [
                    {"low": {"value": 0.45, "unit": "mmol/L"}, "high": {"value": 0.60, "unit": "mmol/L"}}
                ]
            yield self._observation(ref, "73573-8", self._recent_or_stale(90), **extra)
        if self._chance(0.60):
            mg_dl = rng.lognormvariate(0.0, 0.45)
            code, unit, value = rng.choice(
                [("2160-0", "mg/dL", mg_dl), ("38483-4", "mg/dL", mg_dl), ("14682-9", "umol/L", mg_dl * 88.4)]
            )
            yield self._observation(ref, code, self._recent_or_stale(365), **self._quantity(value, unit))
        if self._chance(0.40):
            code = rng.choice(["33914-3", "98979-8", "62238-1", "48642-3"])
            unit = rng.choice(["mL/min/{1.73_m2}", "mL/min/{1.73_m2}", "mL/min"])
            yield self._observation(ref, code, self._recent_or_stale(365), **self._quantity(rng.uniform(8, 125), unit))
        if self._chance(0.25):
            when = self._recent_or_stale(365)
            frequency = rng.choice(["LA6270-8", "LA18926-8", "LA18927-6", "LA18928-4", "LA18929-2"])
            typical = rng.choice(["LA15694-5", "LA15695-2", "LA18930-0", "LA18931-8", "LA18932-6"])
            yield self._observation(
                ref, "68518-0", when, valueCodeableConcept={"coding": [{"system": LOINC, "code": frequency}]}
            )
            if frequency != "LA6270-8":
                yield self._observation(
                    ref, "68519-8", when, valueCodeableConcept={"coding": [{"system": LOINC, "code": typical}]}
                )
        elif self._chance(0.10):
            yield self._observation(
                ref, "74013-4", self._recent_or_stale(365), **self._quantity(rng.uniform(0, 6), "/d")
            )


def population(count: int, seed: int, now: datetime) -> Iterator[list[dict[str, Any]]]:
    """``count`` patients, each as its list of resources (Patient first), generated one at a time."""
    maker = PatientMaker(seed, now)
    for number in range(count):
        resources = maker.patient(number)
        # Observations get ids here, in order, so the same seed gives the same ids.
        for index, resource in enumerate(resources):
            resource.setdefault("id", f"{resources[0]['id']}-r{index}")
        yield resources


# -- writers ---------------------------------------------------------------------------------------------------


def bundle_of(resources: list[dict[str, Any]], bundle_type: str) -> dict[str, Any]:
    """One patient as a collection Bundle, or a transaction Bundle with urn:uuid references (as Synthea writes)."""
    if bundle_type == "collection":
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    patient = resources[0]
    urn = f"urn:uuid:{patient['id']}"
    text = json.dumps(resources).replace(json.dumps(f"Patient/{patient['id']}"), json.dumps(urn))
    entries = [
        {
            "fullUrl": urn if r["resourceType"] == "Patient" else f"urn:uuid:{r['id']}",
            "resource": r,
            "request": {"method": "POST", "url": r["resourceType"]},
        }
        for r in json.loads(text)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_bundles(patients: Iterator[list[dict[str, Any]]], folder: Path, bundle_type: str) -> int:
    """One Bundle file per patient; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for resources in patients:
        (folder / f"{resources[0]['id']}.json").write_text(
            json.dumps(bundle_of(resources, bundle_type)), encoding="utf-8"
        )
        count += 1
    return count


class _ShuffledFile:
    """Lines written in a random order within a window (an export's files are not grouped by patient)."""

    def __init__(self, stream: IO[str], rng: random.Random) -> None:
        self.stream = stream
        self.rng = rng
        self.window: list[str] = []

    def write(self, line: str) -> None:
        self.window.append(line)
        if len(self.window) >= SHUFFLE_WINDOW:
            index = self.rng.randrange(len(self.window))
            self.window[index], self.window[-1] = self.window[-1], self.window[index]
            self.stream.write(self.window.pop())

    def close(self) -> None:
        self.rng.shuffle(self.window)
        self.stream.writelines(self.window)
        self.window.clear()


def write_ndjson(patients: Iterator[list[dict[str, Any]]], folder: Path, seed: int = 0) -> dict[str, int]:
    """A Bulk FHIR export folder: lines per file name."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    files: dict[str, _ShuffledFile] = {}
    lines: dict[str, int] = {}
    split = {"Observation": 2, "MedicationRequest": 2}
    with ExitStack() as stack:
        for resources in patients:
            for resource in resources:
                kind = resource["resourceType"]
                parts = split.get(kind, 1)
                name = f"{kind}.{rng.randrange(parts) + 1}.ndjson" if parts > 1 else f"{kind}.ndjson"
                if name not in files:
                    shuffled = _ShuffledFile(stack.enter_context((folder / name).open("w", encoding="utf-8")), rng)
                    stack.callback(shuffled.close)
                    files[name] = shuffled
                files[name].write(json.dumps(resource, separators=(",", ":")) + "\n")
                lines[name] = lines.get(name, 0) + 1
    return dict(sorted(lines.items()))


def main(argv: list[str] | None = None) -> int:
    """Write a population as NDJSON and/or Bundles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--now", default=DEFAULT_NOW, help="dates are drawn relative to this moment")
    parser.add_argument("--ndjson", type=Path, help="write a Bulk FHIR export folder here")
    parser.add_argument("--bundles", type=Path, help="write one Bundle per patient here")
    parser.add_argument("--bundle-type", choices=("transaction", "collection"), default="transaction")
    args = parser.parse_args(argv)
    if not (args.ndjson or args.bundles):
        parser.error("give --ndjson DIR and/or --bundles DIR")
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00")).astimezone(UTC)
    if args.ndjson:
        lines = write_ndjson(population(args.patients, args.seed, now), args.ndjson, args.seed)
        print(f"{args.ndjson}: " + ", ".join(f"{name} {count}" for name, count in lines.items()), file=sys.stderr)
    if args.bundles:
        count = write_bundles(population(args.patients, args.seed, now), args.bundles, args.bundle_type)
        print(f"{args.bundles}: {count} {args.bundle_type} Bundles", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
