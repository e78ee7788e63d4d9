"""Reliability: kill and resume, concurrent runs, malformed input, safe loading."""
