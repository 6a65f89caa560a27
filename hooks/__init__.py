"""The CDS services: one module per service (discovery entry and handle())."""
