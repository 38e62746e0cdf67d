"""Test helpers for code that uses tokentrail: a fake LLM provider server speaking real wire formats.

Standard library only, so importing it costs nothing beyond tokentrail itself.
"""

from __future__ import annotations

from .fake_server import FakeLLMServer, RecordedRequest

__all__ = ["FakeLLMServer", "RecordedRequest"]
