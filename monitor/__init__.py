"""The service around the clinical core: command line (and, later, API, storage, scheduler)."""
