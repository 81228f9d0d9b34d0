"""Shares sessions between processes: ownership, relays, broadcast and the process lifecycle."""
