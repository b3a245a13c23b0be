"""Seeded scenarios: who buys what, how they pay, what happens to their webhooks, and in which
order everything happens. A scenario is a plan made from its seed alone, before anything runs,
so the same seed always gives the same plan (see `generate`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# How a customer's checkout ends, and how often.
METHODS = {
    "pay": 34,  # 4242: paid
    "three_d_secure": 10,  # 3155: challenge completed, paid
    "three_d_secure_fail": 5,  # 3155: challenge failed, nothing charged, session left open
    "decline": 9,  # 0002: declined; maybe pays with another card later
    "abandon": 14,  # never pays; the session expires
    "free": 8,  # a 100% promotion code: complete with nothing paid
    "refund_fails_later": 6,  # 5126: paid; any refund of it fails a moment later
    "refund_pending": 4,  # 7726: paid; any refund of it is pending, then succeeds
    "start_refused": 0,  # (not chosen: a start can be refused because seats ran out)
}
CARDS = {
    "pay": "4242424242424242",
    "three_d_secure": "4000002500003155",
    "three_d_secure_fail": "4000002500003155",
    "decline": "4000000000000002",
    "refund_fails_later": "4000000000005126",
    "refund_pending": "4000000000007726",
}
# What happens to the webhooks about a customer's checkout and refunds.
WEBHOOK_FATES = {"on_time": 30, "late": 20, "twice": 15, "concurrent": 15, "reversed": 8, "never": 12}
# The merchant's zone: the server's own (TIME_ZONE), one with daylight saving on another date
# than London's, one behind UTC, and two with offsets that are not whole hours.
ZONES = {"Europe/London": 2, "Europe/Paris": 2, "America/New_York": 2, "Asia/Kolkata": 1, "Asia/Kathmandu": 1}
ZONES_WITH_CLOCK_CHANGES = {"Europe/London", "Europe/Paris", "America/New_York"}
# Which day a time is on: an ordinary one, the zone's next clock-change day (in the small hours,
# around the change itself, or later that day), or near midnight so that the date in UTC differs.
SLOT_DAYS = {"ordinary": 5, "clock_change": 3, "other_utc_day": 2}
# About one scenario in three sells through Stripe Connect: two merchants (A owns the even slots,
# B the odd ones; a spare slot is A's), each with an onboarded connected account.
CONNECT_SHARE = 1 / 3
# The platform's fee (PLATFORM_FEE_PERCENT, PLATFORM_FEE_FIXED): round percentages, one that
# rounds half up (7.5% of 2500 is 187.5), a fixed fee alone, and fees that reach the whole price.
CONNECT_FEES = {("10", 30): 3, ("7.5", 0): 2, ("0", 50): 1, ("12.5", 25): 1, ("100", 30): 1}
# The refund reasons whose refunds give the fee back (CONNECT_REFUND_FEE_REASONS): the default,
# the merchant's refunds too, every reason, none.
CONNECT_FEE_REFUND_REASONS = {
    ("sold_out", "slot_cancelled"): 3,
    ("sold_out", "slot_cancelled", "merchant"): 1,
    ("sold_out", "slot_cancelled", "merchant", "customer_cancel"): 1,
    (): 1,
}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    names = [name for name, weight in weights.items() if weight]
    return rng.choices(names, weights=[weights[name] for name in names])[0]


@dataclass(frozen=True)
class SlotTime:
    """When a time starts, as the merchant set it: a kind of day and a wall-clock time there.
    The runner turns it into an instant from today's date (see runner.slot_start)."""

    day: str  # a SLOT_DAYS key
    hour: int
    minute: int

    def describe(self) -> str:
        day = {"ordinary": "in a few days", "clock_change": "on the next clock-change day",
               "other_utc_day": "in a few days, on another date in UTC"}[self.day]
        return f"{self.hour:02d}:{self.minute:02d} {day}"


@dataclass
class Customer:
    index: int
    slot: int
    quantity: int
    method: str
    checkout_webhooks: str
    refund_webhooks: str
    pays_again_after_decline: bool

    @property
    def name(self) -> str:
        return f"c{self.index}"

    @property
    def email(self) -> str:
        return f"c{self.index}@sim.example"

    @property
    def pays(self) -> bool:
        return self.method not in ("abandon",)


# An operation: (kind, argument...). A step is a tuple of operations started together, each in
# its own thread when there are several (a race); steps run one after the other.
Op = tuple
Step = tuple[Op, ...]


@dataclass
class Scenario:
    seed: int
    capacities: list[int]
    customers: list[Customer]
    status_check_seconds: int
    steps: list[Step] = field(default_factory=list)
    zone: str = "Europe/London"
    slot_times: list[SlotTime] = field(default_factory=list)
    # The listing's cancellation policy ("customer" or "none", as the model spells them, free hours,
    # kept percent), and a time of the same listing nobody buys first, to move bookings to.
    policy: tuple[str, int, int] = ("customer", 24, 100)
    spare_slot: SlotTime | None = None
    spare_capacity: int = 0
    # Stripe Connect: off (the platform's own account takes every payment), or on with two
    # merchants, the platform's fee (percent as the setting spells it, fixed minor units) and the
    # refund reasons that give the fee back.
    connect: bool = False
    fee: tuple[str, int] = ("0", 0)
    fee_refund_reasons: tuple[str, ...] = ()

    def merchant_of_slot(self, n: int) -> str:
        """Which merchant ("A" or "B") sells slot `n` (the spare slot, numbered last, is A's)."""
        return "B" if self.connect and n < len(self.capacities) and n % 2 else "A"

    def describe(self) -> list[str]:
        lines = [
            f"seed {self.seed}: slots {self.capacities} (seats), poll throttle {self.status_check_seconds}s",
            f"  merchant in {self.zone}; slots at "
            + ", ".join(f"{n}: {t.describe()}" for n, t in enumerate(self.slot_times)),
            f"  cancellation policy {self.policy[0]}, free until {self.policy[1]} h before, late keeps "
            f"{self.policy[2]}%" + (f"; spare slot {len(self.capacities)} ({self.spare_capacity} seats) at "
                                    f"{self.spare_slot.describe()}" if self.spare_slot else ""),
        ]
        if self.connect:
            owners = ", ".join(f"{n}: {self.merchant_of_slot(n)}" for n in range(len(self.capacities)))
            lines.append(f"  Connect: on, merchants A/B (slots {owners}{'; spare: A' if self.spare_slot else ''}); "
                         f"fee {self.fee[0]}% + {self.fee[1]}, given back for "
                         f"{', '.join(self.fee_refund_reasons) or 'no refund reason'}")
        for c in self.customers:
            extra = ", pays again after the decline" if c.method == "decline" and c.pays_again_after_decline else ""
            lines.append(
                f"  {c.name}: {c.quantity} seat(s) on slot {c.slot}, {c.method}{extra}; "
                f"checkout webhooks {c.checkout_webhooks}, refund webhooks {c.refund_webhooks}"
            )
        return lines


def _customer_count(rng: random.Random) -> int:
    # 1 to 20, leaning to fewer: races for a few seats are where the bugs live, and cheap.
    return min(20, 1 + int(20 * rng.random() ** 5))


def generate(seed: int) -> Scenario:
    """The plan of scenario `seed`: the same seed always gives the same plan."""
    rng = random.Random(seed)
    capacities = [rng.randint(1, 5) for _ in range(rng.choice([1, 1, 2]))]
    customers = [
        Customer(
            index=i,
            slot=rng.randrange(len(capacities)),
            quantity=rng.choice([1, 1, 1, 2, 2, 3]),
            method=_pick(rng, METHODS),
            checkout_webhooks=_pick(rng, WEBHOOK_FATES),
            refund_webhooks=_pick(rng, WEBHOOK_FATES),
            pays_again_after_decline=rng.random() < 0.5,
        )
        for i in range(1, _customer_count(rng) + 1)
    ]
    scenario = Scenario(
        seed=seed, capacities=capacities, customers=customers, status_check_seconds=rng.choice([0, 0, 3])
    )
    _connect(scenario)
    # Where and when, and how much a merchant refunds, from a second generator of the same seed:
    # the plans of the money races stay those they were before zones were added.
    told = random.Random(f"zone-{seed}")
    scenario.zone = _pick(told, ZONES)
    scenario.slot_times = [_slot_time(told, scenario.zone) for _ in capacities]
    scenario.steps = _plan(rng, scenario, told)
    return scenario


def _connect(scenario: Scenario) -> None:
    """Whether the scenario sells through Connect, from a generator of its own (`connect-SEED`),
    so that the other scenarios' plans are what they were. A Connect scenario with one slot gets
    a second one, B's, and about half of its customers buy there; its free orders pay by card
    (promotion codes are the platform's and are not offered on merchants' Checkout)."""
    cn = random.Random(f"connect-{scenario.seed}")
    if cn.random() >= CONNECT_SHARE:
        return
    scenario.connect = True
    scenario.fee = _pick_tuple(cn, CONNECT_FEES)
    scenario.fee_refund_reasons = _pick_tuple(cn, CONNECT_FEE_REFUND_REASONS)
    if len(scenario.capacities) == 1:
        scenario.capacities.append(cn.randint(1, 5))
        for c in scenario.customers:
            c.slot = 1 if cn.random() < 0.5 else 0
    for c in scenario.customers:
        if c.method == "free":
            c.method = "pay"


def _pick_tuple(rng: random.Random, weights: dict[tuple, int]) -> tuple:
    names = list(weights)
    return rng.choices(names, weights=[weights[name] for name in names])[0]


def _slot_time(rng: random.Random, zone: str) -> SlotTime:
    day = _pick(rng, SLOT_DAYS)
    if day == "clock_change" and zone not in ZONES_WITH_CLOCK_CHANGES:
        day = "other_utc_day"
    if day == "clock_change":
        # The changes happen between 01:00 and 03:00 local time: before, in the gap or the
        # repeated hour, just after, or later in the day.
        hour = rng.choice([0, 1, 1, 2, 2, 3, 9, 18])
    elif day == "other_utc_day":
        # East of UTC the small hours are yesterday in UTC; west of it, late evening is tomorrow.
        hour = rng.choice([20, 21, 22, 23]) if zone.startswith("America/") else rng.choice([0, 1, 2, 3])
    else:
        hour = rng.randint(7, 20)
    return SlotTime(day=day, hour=hour, minute=rng.choice([0, 0, 15, 30, 45]))


def _timeline(rng: random.Random, c: Customer, holds: random.Random) -> list[Step]:
    """One customer's steps, in their own order. What holds add (cancelling on Checkout) is
    drawn from `holds`, so that the rest of the plan is what it was before holds."""
    steps: list[Step] = [(("open", c.index),)]
    if c.method == "abandon":
        if rng.random() < 0.5:
            steps.append((("poll", c.index, 1),))
        expires = rng.random() < 0.4
        if expires:
            steps.append((("expire", c.index),))
            steps.append(_webhook_step(rng, c))
        if holds.random() < 0.45:
            # Back from Checkout by its cancel link (before or after the session expired).
            steps.insert(holds.randint(1, len(steps)), (("cancel", c.index),))
        return steps
    if holds.random() < 0.08:
        # The cancel link pressed in another tab while paying: whichever Stripe sees first wins.
        steps.append((("pay", c.index, c.method), ("cancel", c.index)))
    else:
        steps.append((("pay", c.index, c.method),))
    if c.method == "decline" and c.pays_again_after_decline:
        steps.append((("pay", c.index, "pay"),))
    fate = c.checkout_webhooks
    polls = rng.randint(0, 2)
    if fate == "concurrent":
        # The webhook and the customer's success page race, the page from several tabs.
        tabs = tuple(("poll", c.index, 1) for _ in range(rng.randint(1, 3)))
        steps.append((("deliver", c.index, 1, False, "checkout"),) + tabs)
    elif fate in ("on_time", "twice", "reversed"):
        steps.append(_webhook_step(rng, c))
    for _ in range(polls):
        steps.append((("poll", c.index, rng.randint(1, 3)),))
    return steps


def _webhook_step(rng: random.Random, c: Customer, fate: str | None = None, kind: str = "checkout") -> Step:
    """Deliver the customer's webhooks of one kind (checkout or refund) received so far."""
    fate = fate or c.checkout_webhooks
    if fate == "never":
        return (("noop",),)
    copies = 2 if fate == "twice" else 1
    return (("deliver", c.index, copies, fate == "reversed", kind),)


# How long time passes in a wait (seconds): a minute or two, a while, to just before or just
# after the holds taken at the start end (HOLD_MINUTES: 30), or well after.
WAITS = [75, 600, 1500, 1790, 1830, 2400]


def _plan(rng: random.Random, scenario: Scenario, told: random.Random) -> list[Step]:
    holds = random.Random(f"holds-{scenario.seed}")
    timelines = [_timeline(rng, c, holds) for c in scenario.customers]
    steps: list[Step] = []
    # Interleave the customers' timelines at random, each in its own order.
    while any(timelines):
        live = [t for t in timelines if t]
        timeline = rng.choice(live)
        step = timeline.pop(0)
        # Sometimes two customers act at the same moment (two payments for the last seat).
        others = [t for t in live if t is not timeline and t]
        if others and rng.random() < 0.25:
            other = rng.choice(others)
            step = step + other.pop(0)
        steps.append(step)
    # Things that happen to everybody, at random moments.
    extras: list[Step] = []
    for _ in range(rng.randint(0, 3)):
        extras.append((("reconcile",),))
    if rng.random() < 0.35:
        extras.append((("fail_refunds", rng.randint(1, 3), rng.choice(["error", "error", "timeout"])),))
    for c in scenario.customers:
        if c.pays and rng.random() < 0.12:
            # In full, or part of it (in minor units): the booking then still stands.
            extras.append((("merchant_refund", c.index, told.choice([None, None, 500, 1250])),))
        if c.checkout_webhooks == "late":
            extras.append(_webhook_step(rng, c, "on_time"))
        if c.refund_webhooks not in ("never", "late") and rng.random() < 0.6:
            fate = "on_time" if c.refund_webhooks == "concurrent" else c.refund_webhooks
            extras.append(_webhook_step(rng, c, fate, kind="refund"))
    if rng.random() < 0.1:
        extras.append((("cancel_slot", rng.randrange(len(scenario.capacities))),))
    for extra in extras:
        at = rng.randint(0, len(steps))
        if rng.random() < 0.2 and steps:
            # At the very same moment as something else (a reconcile racing a webhook...).
            at = min(at, len(steps) - 1)
            steps[at] = steps[at] + extra
        else:
            steps.insert(at, extra)
    # Time passing between steps (everything else happens at one instant): holds run out and
    # lapse, sessions expire at Stripe, payments come at the last moment or are refused, with
    # the scheduled reconcile running every minute meanwhile. A wait is a step of its own.
    for _ in range(holds.choice([0, 0, 1, 1, 2, 3])):
        steps.insert(holds.randint(0, len(steps)), (("wait", holds.choice(WAITS), holds.randint(1, 59)),))
    _waitlist_steps(scenario, steps)
    _change_steps(scenario, steps)
    return [step for step in steps if any(op[0] != "noop" for op in step)]


# What a waitlist customer does with the offer e-mail: opens its link and pays, opens it and
# walks away from Checkout, leaves the waitlist from it, or lets the offer lapse.
OFFER_ACTIONS = {"pay": 50, "abandon": 12, "leave": 14, "lapse": 24}


def _waitlist_steps(scenario: Scenario, steps: list[Step]) -> None:
    """The waitlist's steps, inserted into a finished plan and drawn from a generator of their
    own, so that the rest of the plan is what it was before the waitlist: a customer told the
    time is sold out joins its waitlist (with htmx or without), later opens the offer e-mail's
    link and pays (or walks away, leaves, lets it lapse), racing with whatever else happens;
    the merchant adds seats or cancels the time."""
    wl = random.Random(f"waitlist-{scenario.seed}")

    def insert(op: Op, after: int, race: float = 0.2) -> int:
        at = wl.randint(after + 1, len(steps))
        if at < len(steps) and wl.random() < race:
            steps[at] = steps[at] + (op,)  # at the very same moment as something else
        else:
            steps.insert(at, (op,))
        return at

    joins: list[int] = []
    for c in scenario.customers:
        if wl.random() >= 0.6:
            continue
        opened = next(n for n, step in enumerate(steps) if ("open", c.index) in step)
        # Straight away (the sold-out answer offers it), or after a while.
        joined = insert(("join", c.index, wl.random() < 0.5), opened if wl.random() < 0.5 else wl.randint(opened, len(steps) - 1), race=0)
        if wl.random() < 0.4:
            # Time passes while they wait (less than an offer's 30 minutes): abandoned checkouts
            # lapse and free their seats, which are offered to them.
            joined = insert(("wait_in_line", c.index, wl.choice(WAITS[:4]), wl.randint(1, 59)), joined, race=0)
        joins.append(joined)
        action = _pick(wl, OFFER_ACTIONS)
        if action == "lapse":
            continue
        # Read at once (next), or some time later.
        at = insert(("offer", c.index, action), joined if wl.random() < 0.5 else wl.randint(joined, len(steps) - 1),
                    race=0.25)
        if action == "pay" and c.checkout_webhooks not in ("never", "late", "concurrent"):
            insert(_webhook_step(wl, c)[0], at, race=0.25)
        if action != "leave" and wl.random() < 0.3:
            insert(("offer", c.index, action), at, race=0.25)  # the link again (another tab, later)
    for _ in range(wl.choice([0, 0, 1, 1, 2])):
        # Mostly while someone waits (the seats go to them), sometimes at any moment.
        after = wl.choice(joins) if joins and wl.random() < 0.7 else -1
        insert(("capacity", wl.randrange(len(scenario.capacities)), wl.randint(1, 2)), after)
    if wl.random() < 0.05:
        insert(("cancel_slot", wl.randrange(len(scenario.capacities))), -1)


# The listing's cancellation policy: (policy, free hours, kept percent). Times start two days
# ahead or more, and a scenario's waits add up to a few hours: 24 free hours means every
# cancellation is free, 2000 that every one is late (and no booking may be moved).
POLICIES = {
    ("customer", 24, 100): 2,  # free until a day before, then nothing back
    ("customer", 24, 50): 2,
    ("customer", 2000, 100): 1,  # late: nothing back
    ("customer", 2000, 33): 2,  # late: 67% back
    ("customer", 2000, 50): 2,
    ("customer", 0, 0): 1,  # free until the start
    ("none", 24, 100): 1,  # refused
}
# What a confirmed customer does themselves, from the my-bookings pages.
CHANGES = {"self_cancel": 5, "reschedule": 5}


def _change_steps(scenario: Scenario, steps: list[Step]) -> None:
    """Customers' own cancellations and moves, inserted into a finished plan and drawn from a
    generator of their own (`changes-SEED`), so the rest of the plan is what it was: a few paying
    customers sign in by the e-mailed link and cancel (free or late under the listing's policy,
    drawn here) or move their booking to another time of the same listing (the other slot, or a
    spare one added for it), after they pay, at a random later moment, sometimes at the same
    moment as something else (a webhook, a refund, a slot's cancellation, another customer's
    change) or twice at once (two tabs)."""
    ch = random.Random(f"changes-{scenario.seed}")
    names = list(POLICIES)
    scenario.policy = ch.choices(names, weights=[POLICIES[p] for p in names])[0]
    payers = [c for c in scenario.customers if c.method not in ("abandon", "three_d_secure_fail")]
    if not payers:
        return
    chosen = [c for c in payers if ch.random() < 0.35][:3]
    for c in chosen:
        kind = _pick(ch, CHANGES)
        paid = max((n for n, step in enumerate(steps) if ("pay", c.index, c.method) in step
                    or ("pay", c.index, "pay") in step), default=None)
        if paid is None:
            continue
        if kind == "reschedule" and len(scenario.capacities) == 1 and scenario.spare_slot is None:
            scenario.spare_slot = SlotTime(day="ordinary", hour=ch.randint(7, 20), minute=ch.choice([0, 30]))
            scenario.spare_capacity = ch.randint(1, 4)
        at = ch.randint(paid + 1, len(steps))
        op = (kind, c.index)
        if at < len(steps) and ch.random() < 0.35:
            steps[at] = steps[at] + (op,)  # at the very same moment as something else
        elif ch.random() < 0.1:
            steps.insert(at, (op, op))  # from two tabs at once
        else:
            steps.insert(at, (op,))
