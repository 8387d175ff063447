"""The Celery side of the event pipeline (issue 3): `workers.app`, the app, its tasks
(`process_patient`, `deliver_webhook`), their base class and the dispatcher."""
