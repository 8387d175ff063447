"""The infusion chair: a unit's patients with today's clearance, and doses and gradings
recorded where they happen (issue 14, item 3)."""
