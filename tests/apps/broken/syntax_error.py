"""Test app with a syntax error: the server must show a clear error and keep serving others."""

def broken(:
    pass
