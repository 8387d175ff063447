"""Events folded into decisions: the task body, workers, retries, timers."""
