"""HTTP routes, grouped by audience."""
