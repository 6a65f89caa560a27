"""Caller authentication (CDS Hooks JWT), issuer registry and the fhirServer allowlist."""
