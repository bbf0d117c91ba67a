"""The integration layer (issue 4)."""
