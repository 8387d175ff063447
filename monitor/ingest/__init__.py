"""Events in: validated, stored durably with their outbox row, then dispatched."""
