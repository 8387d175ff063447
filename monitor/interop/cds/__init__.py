"""CDS Hooks 2.0 (issue 6): the bortezomib order check answered at order-sign / order-select.

`cards` decides (pure), `jwt_auth` authenticates CDS clients, `api` serves the endpoints.
"""
