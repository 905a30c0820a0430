"""The HTTP edge: blueprints, request parsing, and the one table that maps domain errors to responses."""
