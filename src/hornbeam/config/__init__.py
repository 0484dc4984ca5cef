"""hornbeam's settings: declared once in settings.py, read from every source by sources.py.

The rest of the server codes against these names only.
"""

from hornbeam.config.settings import Settings, describe
from hornbeam.config.sources import from_start_options, load
from hornbeam.config.types import Bind

__all__ = ["Bind", "Settings", "describe", "from_start_options", "load"]
