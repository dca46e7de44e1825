"""The version of the ``microposts-client`` distribution: its one source.

``client/pyproject.toml`` reads it (``[tool.setuptools.dynamic]``); a release
changes it as the README's "Releasing" section says.
"""

__version__ = "0.2.0"
