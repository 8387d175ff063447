"""One module per concern of POLICY.md; each rule is a function named after its rule id."""
