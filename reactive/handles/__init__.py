"""Runtime of the computations: one handle per declared computation."""
