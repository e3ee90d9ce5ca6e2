"""Sphinx configuration for the tom_education documentation.

Build with::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

Only Sphinx built-ins are used, so the build needs no network access.
"""

project = 'tom_education'
author = 'tom_education contributors'
copyright = 'tom_education contributors'
version = '2.0'
release = '2.0.0.dev0'

extensions = []

root_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
templates_path = []

# 'default' highlights Python and falls back to plain text (no warning) for shell examples.
highlight_language = 'default'
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_static_path = []
html_title = 'tom_education'
