"""Helpers shared by several test packages (real services started as subprocesses)."""
