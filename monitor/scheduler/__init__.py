"""The scheduler: one tick every `scheduler_interval_s` runs each domain's periodic jobs, by
one replica at a time (a database lease)."""
