"""Reading FHIR: the client, prefetch handling, and extraction of engine facts."""
