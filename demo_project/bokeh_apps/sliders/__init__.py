"""Marks the sliders app directory as a package, so ``main.py`` can use relative imports.

Bokeh's DirectoryHandler loads this file as a package module under a generated name
(``bokeh_app_<hex>``), registers it in ``sys.modules`` and gives every other app file it
runs that package, so ``from .helpers import make_data`` resolves to this directory.

Keep it empty: Bokeh only executes this file in ``on_server_loaded``, *after* it has
already run ``app_hooks.py``, so names defined here are not reliably importable there.
"""
