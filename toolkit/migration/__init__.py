"""Migration between engines and hosts: preflight, live or cold move, rollback, journal.

>>> from toolkit import migrate, get_backend
>>> report = migrate("web1", source=get_backend("docker"), dest=get_backend("docker+tcp://10.77.0.12:2375"))
"""

from toolkit.migration.drain import drain
from toolkit.migration.execute import PAUSE_ENV, copy_image, migrate, recover
from toolkit.migration.plan import Plan, preflight
from toolkit.models import MIGRATION_MODES as MODES

__all__ = ["MODES", "PAUSE_ENV", "Plan", "copy_image", "drain", "migrate", "preflight", "recover"]
