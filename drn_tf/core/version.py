"""The package version (one place; pyproject.toml repeats it for the build, a test compares them)."""

VERSION = "0.1.0"
