"""A patient's course: state, decisions, history and clearance at the chair."""
