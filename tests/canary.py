"""The API key the tests use. ``tests/test_canary.py`` runs the fault matrix, the batch tests and the
client's trust tests again with a recognisable key here, and looks for it everywhere."""

from __future__ import annotations

import os

TEST_KEY = os.environ.get("CLAUDE_MAGIC_TEST_KEY") or "sk-ant-api03-test-key-0123456789abcdef"
