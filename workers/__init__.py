"""Celery app and tasks (the event pipeline, issue 3): thin: load by id, call `policies`, persist.

Nothing here yet: the pipeline issue adds the Celery app and `process_patient`.
"""
