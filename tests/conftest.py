"""Shared pytest fixtures live in plugin modules under tests/fixtures/, one per topic."""

pytest_plugins = [
    "tests.fixtures.kube",
    "tests.fixtures.regions",
    "tests.fixtures.runner",
]
