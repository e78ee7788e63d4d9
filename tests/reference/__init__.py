"""Test oracles: independent reference implementations used only by the tests."""
