#!/bin/sh
# One-shot loader for docker-compose: waits until HAPI answers /metadata, then POSTs every hand-written test
# patient (tests/data/patients/*.json, FHIR transaction bundles) and prints the Patient id HAPI assigned to each.
set -eu
FHIR_BASE="${FHIR_BASE:-http://hapi:8080/fhir}"
PATIENTS_DIR="${PATIENTS_DIR:-/patients}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"

waited=0
until curl -fsS -o /dev/null -H 'Accept: application/fhir+json' "$FHIR_BASE/metadata"; do
  if [ "$waited" -ge "$WAIT_SECONDS" ]; then
    echo "HAPI did not answer $FHIR_BASE/metadata within ${WAIT_SECONDS}s" >&2
    exit 1
  fi
  sleep 5
  waited=$((waited + 5))
done

for bundle in "$PATIENTS_DIR"/*.json; do
  name=$(basename "$bundle")
  [ "$name" = "expected.json" ] && continue
  response=$(curl -fsS -X POST -H 'Content-Type: application/fhir+json' -H 'Accept: application/fhir+json' \
    --data-binary "@$bundle" "$FHIR_BASE")
  patient=$(printf '%s' "$response" | tr -d ' \n' | grep -o '"location":"Patient/[^/"]*' | head -n 1 | cut -d'"' -f4)
  echo "$name -> ${patient:-no Patient created?}"
done
echo "loaded"
