"""Which timezone names a merchant can choose: the canonical ones, grouped by region.

The zone database also carries ~150 deprecated aliases ("US/Eastern", "GB", "Asia/Calcutta",
"Etc/GMT+5"…). A merchant picks from the canonical names only: those of the database's zone.tab
(one or more per country, what tzselect offers) plus UTC. A merchant who already has an alias
keeps it: their zone still works everywhere, and their profile can be saved unchanged.
"""

import zoneinfo
from functools import cache
from importlib import resources
from pathlib import Path

from django.core.exceptions import ValidationError

UTC = "UTC"


def _zone_tab_text() -> str | None:
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:  # the tzdata package, where the system has no zone database
        return resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None


@cache
def canonical_timezones() -> frozenset[str]:
    """The names a merchant may choose (read once per process)."""
    available = zoneinfo.available_timezones()
    text = _zone_tab_text()
    if text is None:  # no zone.tab anywhere: the region/city names, without the old region folders
        regions = {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific"}
        names = {name for name in available if name.split("/", 1)[0] in regions}
    else:
        rows = (line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))
        names = {row[2].strip() for row in rows if len(row) >= 3}
    return frozenset((names & available) | {UTC})


def timezone_choices(current: str = "") -> list[tuple[str, list[tuple[str, str]]]]:
    """The menu: canonical names grouped by region ("Europe" → "Europe/Paris"…), UTC on its own;
    `current`, when it is a valid alias the merchant already has, is kept under "Your current timezone"."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(canonical_timezones() - {UTC}):
        region, _, place = name.partition("/")
        groups.setdefault(region, []).append((name, place.replace("_", " ").replace("/", " / ")))
    choices = [(region, cities) for region, cities in sorted(groups.items())]
    choices.append(("Universal", [(UTC, "UTC")]))
    if current and current not in canonical_timezones() and current in zoneinfo.available_timezones():
        choices.insert(0, ("Your current timezone", [(current, current.replace("_", " "))]))
    return choices


def validate_selectable_timezone(name: str, *, current: str = "") -> None:
    """The one rule for a timezone a merchant chooses: a canonical name, or the (still valid) one
    they already have."""
    if name in canonical_timezones():
        return
    if name and name == current and name in zoneinfo.available_timezones():
        return
    if name in zoneinfo.available_timezones():
        raise ValidationError(
            f"“{name}” is an old alias in the timezone database: choose the current name of the place, "
            "such as Europe/London or America/New_York."
        )
    raise ValidationError(f"“{name}” is not a timezone name such as Europe/London.")
