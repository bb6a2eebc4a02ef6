"""Test doubles: real local servers that stand in for external systems in tests."""
