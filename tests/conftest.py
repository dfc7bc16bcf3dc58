"""Load the emulator's pytest fixtures, unless the installed package already did (its pytest11
entry point registers the same module, and pytest refuses to register it twice)."""

from importlib.metadata import entry_points

_PLUGIN = "claude_magic.emulator.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) else [_PLUGIN]
