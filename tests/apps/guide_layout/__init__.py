"""Marks the directory as a package: the user guide's directory layout, file for file."""
