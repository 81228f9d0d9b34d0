"""Test app that raises while building the document."""

raise RuntimeError("this app is broken on purpose")
