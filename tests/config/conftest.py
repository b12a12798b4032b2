"""Fixtures of the outer shell's tests."""

from tests.config.home_world import home_world  # noqa: F401 - the home page's world, a fixture
