"""Who may do what: API tokens, roles, and the tamper-evident audit log."""
