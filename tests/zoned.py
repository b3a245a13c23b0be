"""Merchants whose clocks differ from the server's TIME_ZONE (Europe/London), and the exact text
each of their slots must read wherever it is shown.

- Europe/Paris on the day its clocks go forward (last Sunday of March, 02:00 → 03:00): 09:30 in
  Paris is 08:30 in London.
- Asia/Kolkata, +05:30 all year: 02:15 on 10 February is 20:45 on 9 February in London, so a
  page in the wrong zone shows the wrong day as well as the wrong time.

The dates are in next year, so the slots are always in the future.
"""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.utils import timezone

from tests.factories import make_listing, make_merchant, make_slot


def _last_sunday_of_march(year: int) -> int:
    last = dt.date(year, 3, 31)
    return (last - dt.timedelta(days=(last.weekday() + 1) % 7)).day


@dataclass(frozen=True)
class Clock:
    zone: str
    wall: dt.datetime  # the slot's start, as the merchant's clock shows it (naive)

    @property
    def starts_at(self) -> dt.datetime:
        return self.wall.replace(tzinfo=zoneinfo.ZoneInfo(self.zone))

    # The texts below are written from the wall clock alone; nothing here converts a zone.
    @property
    def long(self) -> str:  # "l j F Y, H:i"
        w = self.wall
        return f"{w:%A} {w.day} {w:%B} {w.year}, {w:%H:%M}"

    @property
    def long_no_year(self) -> str:  # "l j F, H:i"
        w = self.wall
        return f"{w:%A} {w.day} {w:%B}, {w:%H:%M}"

    @property
    def short(self) -> str:  # "D j M Y, H:i"
        w = self.wall
        return f"{w:%a} {w.day} {w:%b} {w.year}, {w:%H:%M}"

    @property
    def short_no_year(self) -> str:  # "D j M, H:i"
        w = self.wall
        return f"{w:%a} {w.day} {w:%b}, {w:%H:%M}"

    @property
    def csv(self) -> str:
        return f"{self.wall:%Y-%m-%d %H:%M}"

    @property
    def hhmm(self) -> str:
        return f"{self.wall:%H:%M}"


NEXT_YEAR = timezone.now().year + 1
PARIS = Clock("Europe/Paris", dt.datetime(NEXT_YEAR, 3, _last_sunday_of_march(NEXT_YEAR), 9, 30))
KOLKATA = Clock("Asia/Kolkata", dt.datetime(NEXT_YEAR, 2, 10, 2, 15))
CLOCKS = {"paris": PARIS, "kolkata": KOLKATA}


def zoned_slot(clock: Clock, *, capacity: int = 5, **merchant_fields):
    merchant = make_merchant(timezone_name=clock.zone, **merchant_fields)
    listing = make_listing(merchant=merchant, title=f"Walk in {clock.zone}")
    return make_slot(listing=listing, capacity=capacity, starts_at=clock.starts_at)
