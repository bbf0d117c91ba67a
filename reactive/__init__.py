"""The reactive engine (issue 3)."""
