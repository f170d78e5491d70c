"""Registered models: importing this package registers every built-in one (its only side effect)."""
