"""HTTP plumbing every router shares: dependencies, request guard, strict JSON, errors."""
