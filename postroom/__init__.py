"""postroom's small shared core.

Owns what every service needs and nothing service-specific: the settings object, typed ids and
events, the error tree, address and header validation, MIME parsing of stored mail, the CLI and
the wiring that runs roles. Only ``postroom.cli`` and ``postroom.runner`` import the service
packages; everything else here imports nothing of them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
