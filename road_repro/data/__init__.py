"""Data: the unified example schema, one loader module per dataset, features, mixing and synthetic data."""
