"""Deterministic retail event simulator with injected faults and its ground truth.

``generate`` simulates a shop for a number of days: customers and products (one reference
snapshot per day), and for every order a lifecycle of order, payment and shipment events
(basket updates, failed and retried payments, cancellations before and after payment, refunds,
failed and re-dispatched shipments). Events are written in arrival order to one NDJSON file per
topic, with faults injected: duplicate deliveries, out-of-order and late arrivals, malformed
lines and orphan events. ``truth.json`` holds the docs/metrics.md answers computed from the
simulator's own decisions (see :mod:`retail_pipeline.simulation.truth`).

Money is exact: unit prices are integers in 1/10000 (about 15% of products have sub-cent prices
such as 0.125 or 2.4999), ``order_total`` is the exact sum of quantity * unit_price rounded to cents
half away from zero, and every amount is written as decimal text from those integers, never
through a binary float. About 8% of orders (customers in the UK and the euro area) are in GBP or
EUR, and their payments carry the same currency.

Everything derives from ``random.Random(seed)``; no wall clock is read, so the same arguments
give byte-identical files. The simulated world stops at the end of the last day: events an order
would have after that have not happened yet, so recent orders are still in flight.

Valid events are assembled from precomputed JSON fragments rather than dicts passed through a
serializer, which is several times cheaper per event: every string value comes from a fixed ASCII
vocabulary (ids, statuses, carriers), so no escaping is needed, and each line is exactly what
``orjson.dumps`` would write for the same values (the tests check this). Lines wait in a calendar
queue keyed by arrival minute until no later event can overtake them, so memory is bounded by the
events in flight, not by the run.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from retail_pipeline.events.contract import EVENT_TYPE_TOPIC, TOPICS
from retail_pipeline.simulation.truth import (
    CENTS_PER_UNIT_PRICE,
    MS_PER_DAY,
    MS_PER_HOUR,
    REPORTING_CURRENCY,
    UNIT_PRICE_SCALE,
    LineItem,
    OrderLifecycle,
    ProductInfo,
    TruthAccumulator,
    round_half_away,
)

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
CURRENCY = REPORTING_CURRENCY
"""The currency of most orders; see ``_LOCAL_CURRENCY`` for the others."""
EVENT_VERSION = 1

# kind: (weight, what the event needs for the kind to apply)
_MALFORMED_SPECS: dict[str, tuple[int, str]] = {
    "invalid_json": (10, "any"),
    "missing_field": (8, "any"),
    "wrong_type": (8, "any"),
    "unknown_event_type": (5, "any"),
    "unsupported_version": (4, "any"),
    "truncated": (8, "any"),
    "invalid_utf8": (4, "any"),
    "bad_timestamp": (5, "any"),
    "invalid_value": (6, "any"),
    "non_finite_money": (6, "money"),
    "money_out_of_range": (5, "money"),
    "money_too_precise": (6, "money"),
    "negative_money": (5, "money"),
    "money_as_string": (5, "money"),
    "duplicate_key": (8, "any"),
    "timestamp_out_of_range": (6, "any"),
    "timestamp_not_z": (5, "any"),
    "bad_currency": (5, "money"),
    "bad_quantity": (6, "items"),
    "bad_version": (5, "any"),
}
MALFORMED_KINDS: tuple[str, ...] = tuple(_MALFORMED_SPECS)
"""Kinds of garbage line the simulator writes; each breaks a rule of docs/metrics.md's "What a valid
event is" (payment and order kinds on ``money``, ``bad_quantity`` only on lines with items)."""


@dataclass(frozen=True)
class FaultRates:
    """Fault probabilities, each a fraction of valid events.

    One draw per valid event decides its fault, so an event gets at most one and the rates
    must sum to at most 1.
    """

    duplicate: float = 0.02
    """An extra byte-identical copy of the event (same ``event_id``), arriving a little later."""
    out_of_order: float = 0.05
    """The event arrives 1-30 minutes late, after events that happened after it."""
    late: float = 0.01
    """The event arrives 1-12 hours late."""
    malformed: float = 0.01
    """An extra garbage line is written next to the event (see ``MALFORMED_KINDS``)."""
    orphan: float = 0.002
    """An extra valid payment or shipment event for an order that is never created."""

    def __post_init__(self) -> None:
        for name in ("duplicate", "out_of_order", "late", "malformed", "orphan"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name} must be in [0, 1], got {value}")
        if self.total > 1.0:
            raise ValueError(f"fault rates must sum to at most 1, got {self.total}")

    @property
    def total(self) -> float:
        """The fraction of valid events that get some fault."""
        return self.duplicate + self.out_of_order + self.late + self.malformed + self.orphan

    @classmethod
    def none(cls) -> FaultRates:
        """No faults at all: every line is a unique, valid, non-orphan event."""
        return cls(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=0.0, orphan=0.0)


@dataclass(frozen=True)
class TopicSummary:
    """What was written to one topic's NDJSON file."""

    path: Path
    lines: int
    """All lines: valid events + duplicates + malformed."""
    valid_events: int
    """Distinct valid events, orphans included."""
    duplicates: int
    """Extra copies of valid events (same bytes, same ``event_id``)."""
    malformed: int
    """Garbage lines that fail the contract."""
    orphans: int
    """Distinct valid events whose ``order_id`` never gets an ``order_created``."""
    out_of_order: int
    """Valid events delayed by minutes."""
    late: int
    """Valid events delayed by hours."""
    malformed_by_kind: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationSummary:
    """Counts and paths of one simulator run."""

    out_dir: Path
    seed: int
    days: int
    first_day: date
    orders: int
    in_flight: int
    """Orders whose lifecycle goes on past the end of the window (its later events are absent)."""
    customers: int
    products: int
    topics: Mapping[str, TopicSummary]
    customers_path: Path
    products_path: Path
    snapshots_dir: Path
    truth_path: Path

    @property
    def lines(self) -> int:
        """Lines written to all event files."""
        return sum(topic.lines for topic in self.topics.values())

    @property
    def valid_events(self) -> int:
        """Distinct valid events in all event files."""
        return sum(topic.valid_events for topic in self.topics.values())

    @property
    def duplicates(self) -> int:
        """Duplicate lines in all event files."""
        return sum(topic.duplicates for topic in self.topics.values())

    @property
    def malformed(self) -> int:
        """Malformed lines in all event files."""
        return sum(topic.malformed for topic in self.topics.values())

    @property
    def orphans(self) -> int:
        """Orphan events in all event files."""
        return sum(topic.orphans for topic in self.topics.values())


# --- catalogue and behaviour parameters -------------------------------------------------------

# category: (popularity weight, min price cents, max price cents, nouns)
_CATEGORIES: dict[str, tuple[float, int, int, tuple[str, ...]]] = {
    "Clothing": (
        0.22,
        999,
        14999,
        ("T-Shirt", "Hoodie", "Jeans", "Rain Jacket", "Sneakers", "Wool Socks", "Chinos"),
    ),
    "Electronics": (
        0.18,
        1999,
        89999,
        ("Wireless Earbuds", "Bluetooth Speaker", "USB-C Charger", "Smartwatch", "Webcam"),
    ),
    "Home & Kitchen": (
        0.16,
        799,
        29999,
        ("Chef's Knife", "Coffee Grinder", "Cast Iron Pan", "Throw Blanket", "Desk Lamp"),
    ),
    "Beauty": (
        0.12,
        499,
        7999,
        ("Face Serum", "Shampoo", "Lip Balm", "Sunscreen SPF 50", "Hand Cream"),
    ),
    "Sports & Outdoors": (
        0.10,
        999,
        39999,
        ("Yoga Mat", "Running Belt", "Camping Stove", "Water Bottle", "Dumbbell Set"),
    ),
    "Books": (
        0.10,
        699,
        4999,
        ("Cookbook", "Mystery Novel", "Travel Guide", "Data Handbook", "Poetry Collection"),
    ),
    "Toys & Games": (
        0.07,
        799,
        12999,
        ("Puzzle 1000pc", "Board Game", "Building Blocks", "Plush Bear", "Card Game"),
    ),
    "Grocery": (
        0.05,
        249,
        3999,
        ("Espresso Beans", "Green Tea", "Olive Oil", "Dark Chocolate", "Granola"),
    ),
}
_BRANDS = (
    "Acme", "Nimbus", "Vertex", "Aurora", "Cobalt", "Juniper", "Harbor", "Solstice",
    "Atlas", "Pioneer", "Willow", "Summit",
)  # fmt: skip
_VARIANTS = ("", " Pro", " Lite", " Max", " Mini", " Plus", " Classic", " Eco")
_PRODUCTS_PER_CATEGORY = 30

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sophia", "Lucas", "Mia", "Ethan",
    "Amelia", "Leo", "Harper", "Oscar", "Ella", "Hugo", "Chloe", "Arjun", "Yuki", "Fatima",
    "Lars", "Ingrid", "Pablo", "Lucia", "Ahmed", "Zoe", "Kenji", "Priya", "Jonas", "Clara",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Miller", "Brown", "Davis", "Martinez", "Wilson", "Lopez",
    "Taylor", "Anderson", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Schmidt", "Muller",
    "Rossi", "Dubois", "Nielsen", "Kowalski", "Novak", "Tanaka", "Patel", "Khan", "Silva",
    "Jansen", "Berg", "Murphy",
)  # fmt: skip
_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "ES", "IT", "NL", "AU", "PL", "SE", "IE")
_COUNTRY_WEIGHTS = (40, 10, 10, 8, 7, 5, 5, 4, 4, 3, 2, 2)

# Orders by hour of day (UTC): evening peak on weekdays, flatter and earlier on weekends.
_WEEKDAY_HOURS = (2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 6, 6, 6, 7, 8, 10, 12, 13, 12, 9, 5)
_WEEKEND_HOURS = (3, 2, 1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 9, 8, 8, 8, 8, 9, 10, 10, 9, 7, 4)
# Monday..Sunday volume factors (mean 1.0).
_WEEKDAY_FACTORS = (0.95, 0.92, 0.94, 0.98, 1.06, 1.12, 1.03)

_LINE_COUNT_WEIGHTS = (40, 27, 17, 10, 6)  # basket lines 1..5
_QUANTITY_WEIGHTS = (70, 22, 8)  # quantity 1..3
_PAYMENT_METHODS = ("card", "paypal", "apple_pay", "google_pay", "bank_transfer")
_PAYMENT_METHOD_WEIGHTS = (56, 18, 13, 8, 5)
_FAILURE_REASONS = ("card_declined", "insufficient_funds", "expired_card", "fraud_suspected")
# carrier: (weight, min transit hours, max transit hours)
_CARRIERS: dict[str, tuple[int, int, int]] = {
    "UPS": (30, 18, 96),
    "FedEx": (22, 14, 84),
    "DHL": (20, 24, 120),
    "USPS": (18, 24, 144),
    "DPD": (10, 20, 110),
}
_ORDER_SOURCES = ("web-shop", "mobile-app")
_PAYMENT_SOURCE = "payment-service"
_SHIPMENT_SOURCE = "fulfillment-service"
_UNKNOWN_EVENT_TYPES = {
    "orders": ("order_shipped", "order_returned", "ORDER_CREATED"),
    "payments": ("payment_voided", "payment_chargeback", "payment_pending"),
    "shipments": ("shipment_lost", "shipment_returned", "shipment_delayed"),
}
_ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "event_version",
    "event_timestamp",
    "produced_at",
    "source_system",
)
_ENTITY_FIELDS = {
    "orders": ("order_id", "customer_id", "order_total", "currency", "order_status"),
    "payments": (
        "payment_id",
        "order_id",
        "amount",
        "currency",
        "payment_method",
        "payment_status",
    ),
    "shipments": ("shipment_id", "order_id", "carrier", "shipment_status"),
}
_MONEY_FIELD = {"orders": "order_total", "payments": "amount"}
_ID_FIELD = {"orders": "order_id", "payments": "payment_id", "shipments": "shipment_id"}
_RAW = "@raw@"
"""Placeholder string replaced by raw JSON text (``NaN``, ``1e309``) after serialising."""
_DUPLICATE = "@dup@"
"""Placeholder key replaced by a repeated key after serialising."""

# Prices: about 15% of products have 3 or 4 decimals; a quarter of those cost less than 1.
_SUB_CENT_SHARE = 0.15
_SUB_CENT_BELOW_ONE = 0.25
# Fractions in 1/10000 that make rounding interesting (.125 and .005 are half a cent).
_SUB_CENT_ENDINGS = (1250, 50, 9950, 4999, 8750, 3333, 6667, 2450, 9995, 1255)
_CENT_ENDINGS = (9900, 9900, 9900, 4900, 0, 9500)
_CENT_REPRICE_ENDING = 9900
# Customers in these countries pay in their local currency with this probability:
# GB 10% x 0.3 + euro area 34% x 0.15 = about 8% of orders.
_LOCAL_CURRENCY: dict[str, tuple[str, float]] = {
    "GB": ("GBP", 0.30),
    **{country: ("EUR", 0.15) for country in ("DE", "FR", "ES", "IT", "NL", "IE")},
}
_ORPHAN_CURRENCIES = ("USD",) * 8 + ("EUR", "GBP")

# Raw JSON text for malformed lines: each breaks a rule of docs/metrics.md "What a valid event is".
_NON_FINITE = (b"1e309", b"-1e309", b"NaN", b"Infinity", b"-Infinity", b"1E+400")
_TOO_LARGE = (
    b"1e20",
    b"1e16",
    b"10000000000000000",
    b"10000000000000000.00",
    b"12345678901234567.5",
)
_OUT_OF_RANGE_TIMESTAMPS = (
    "0000-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59Z",
)
_BAD_CURRENCIES = ("usd", "eur", "Gbp", "ZZZ", "ABC", "US", "USDD", "", "$")
_BAD_QUANTITIES = (b"0", b"2.0", b"1000000001", b"true")
_BAD_VERSIONS = (b"true", b"1.0", b"false", b"0")

_MASK64 = (1 << 64) - 1
_ID_BLOCK = 4096
_MINUTE_SECOND = tuple(f"{m:02d}:{s:02d}." for m in range(60) for s in range(60))
_MILLIS_Z = tuple(f"{ms:03d}Z" for ms in range(1000))
_ORPHAN_ID_BASE = 1 << 63
_EPOCH = date(1970, 1, 1)


# Fragments of the compact JSON of a valid event, in the contract's field order.
_EVENT_HEAD = {
    event_type: f'","event_type":"{event_type}","event_version":{EVENT_VERSION},"event_timestamp":"'
    for event_type in EVENT_TYPE_TOPIC
}
_PRODUCED_AT = '","produced_at":"'
_ORDERS, _PAYMENTS, _SHIPMENTS = (
    TOPICS.index(name) for name in ("orders", "payments", "shipments")
)


class _PastHorizon(Exception):
    """An order's next event would happen after the simulated window ends."""


def _scramble(value: int, salt: int) -> str:
    """16 hex digits from a bijection on 64-bit integers: unique ids that look random."""
    value = ((value ^ salt) * 0x9E3779B97F4A7C15) & _MASK64
    return f"{value ^ (value >> 29):016x}"


def _cum(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _decimal_text(value: int, digits: int) -> str:
    """A non-negative integer of ``10**-digits`` units as exact JSON decimal text.

    Trailing zeros are dropped but one decimal stays, as ``orjson`` writes the same value:
    ``_decimal_text(1250, 4) == "0.125"``, ``_decimal_text(15000, 2) == "150.0"``.
    """
    whole, fraction = divmod(value, 10**digits)
    decimals = f"{fraction:0{digits}d}".rstrip("0") or "0"
    return f"{whole}.{decimals}"


def _money(cents: int) -> str:
    """A cents amount as a JSON number with at most two decimals."""
    return _decimal_text(cents, 2)


def _unit_price(units: int) -> str:
    """A unit price in 1/10000 as a JSON number with at most four decimals."""
    return _decimal_text(units, 4)


def _to_cents(units: int) -> int:
    """1/10000 units rounded to cents, half away from zero."""
    return round_half_away(units, CENTS_PER_UNIT_PRICE)


def _json_array(records: list[bytes]) -> bytes:
    if not records:
        return b"[]\n"
    return b"[\n" + b",\n".join(records) + b"\n]\n"


@dataclass(slots=True)
class _Order:
    """The mutable state of one order while its lifecycle is being decided."""

    life: OrderLifecycle
    customer_id: str
    source_tail: str
    basket: list[list[Any]]
    """Lines as ``[product_id, quantity, unit_price]``, the price in 1/10000 units."""

    def total_cents(self) -> int:
        """Sum of quantity * unit_price, exact, then rounded to cents half away from zero."""
        exact: int = sum(quantity * price for _, quantity, price in self.basket)
        return (exact + CENTS_PER_UNIT_PRICE // 2) // CENTS_PER_UNIT_PRICE  # exact >= 0


class _Simulator:
    def __init__(
        self,
        out_dir: Path,
        *,
        days: int,
        orders_per_day: int,
        seed: int,
        faults: FaultRates,
        start: date,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.out_dir = out_dir
        self.days = days
        self.orders_per_day = orders_per_day
        self.seed = seed
        self.faults = faults
        self.start = start
        self.progress = progress
        self.rng = random.Random(seed)
        self._random = self.rng.random
        self.start_ms = (start - _EPOCH).days * MS_PER_DAY
        self.horizon_ms = self.start_ms + days * MS_PER_DAY
        salts = random.Random(seed ^ 0x5EED)
        self._order_salt = salts.getrandbits(64)
        self._payment_salt = salts.getrandbits(64)
        self._shipment_salt = salts.getrandbits(64)
        self.truth = TruthAccumulator()

        # Fault thresholds on one uniform draw per valid event.
        self._p_any = faults.total
        self._p_late = faults.late
        self._p_out_of_order = self._p_late + faults.out_of_order
        self._p_duplicate = self._p_out_of_order + faults.duplicate
        self._p_malformed = self._p_duplicate + faults.malformed

        self._hour_prefixes: dict[int, str] = {}
        self._event_ids: list[str] = []
        # Arrival-time calendar queue: minute -> [(arrival_ms, seq, topic, line)].
        self._queue: dict[int, list[tuple[int, int, int, bytes]]] = {}
        self._drained_minute = self.start_ms // MS_PER_MINUTE
        self._seq = 0
        self._order_counter = 0
        self._in_flight = 0
        self._orphan_counter = 0
        self._payment_counter = 0
        self._shipment_counter = 0
        self._last_orphan_order: str | None = None

        self._valid = [0] * len(TOPICS)
        self._duplicates = [0] * len(TOPICS)
        self._malformed = [0] * len(TOPICS)
        self._orphans = [0] * len(TOPICS)
        self._out_of_order = [0] * len(TOPICS)
        self._late = [0] * len(TOPICS)
        self._malformed_kinds: list[dict[str, int]] = [{} for _ in TOPICS]
        self._files: list[BinaryIO] = []

        self._hour_cum_weekday = _cum(_WEEKDAY_HOURS)
        self._hour_cum_weekend = _cum(_WEEKEND_HOURS)
        self._line_cum = _cum(_LINE_COUNT_WEIGHTS)
        self._qty_cum = _cum(_QUANTITY_WEIGHTS)
        self._method_cum = _cum(_PAYMENT_METHOD_WEIGHTS)
        self._carrier_names = tuple(_CARRIERS)
        self._carrier_cum = _cum([spec[0] for spec in _CARRIERS.values()])
        # Malformed kinds that apply, by topic and whether the line carries items.
        self._malformed_tables: dict[tuple[int, bool], tuple[tuple[str, ...], list[float]]] = {}
        for topic, topic_name in enumerate(TOPICS):
            for has_items in (False, True):
                needs = {"any"}
                if topic_name in _MONEY_FIELD:
                    needs.add("money")
                if has_items:
                    needs.add("items")
                kinds = tuple(k for k, (_, need) in _MALFORMED_SPECS.items() if need in needs)
                weights = _cum([_MALFORMED_SPECS[k][0] for k in kinds])
                self._malformed_tables[topic, has_items] = (kinds, weights)
        self._country_cum = _cum(_COUNTRY_WEIGHTS)
        self._item_json: dict[LineItem, str] = {}
        self._money_texts: dict[int, str] = {}
        self._source_tails = {
            source: f'","source_system":"{source}",'
            for source in (*_ORDER_SOURCES, _PAYMENT_SOURCE, _SHIPMENT_SOURCE)
        }

        self.products: list[dict[str, Any]] = []
        self._product_weights: list[float] = []
        self._price_units: dict[str, int] = {}
        """Current unit price per product, in 1/10000."""
        self._reprice_ending: dict[str, int] = {}
        """The fraction (1/10000) a product's price ends in after a change; also its minimum."""
        self._active_ids: list[str] = []
        self._active_cum: list[float] = []
        self.customers: list[bytes] = []
        self._customer_ids: list[str] = []
        self._customer_local: list[tuple[str, float] | None] = []
        """Per customer: (local currency, probability an order is in it), or None."""
        self._currency_fragments = {
            currency: (f',"currency":"{currency}","order_status":"', f',"currency":"{currency}"')
            for currency in (CURRENCY, "EUR", "GBP")
        }

    # --- helpers ---------------------------------------------------------------------------

    def _money_text(self, cents: int) -> str:
        """``_money(cents)``, memoised: order totals and amounts repeat across events."""
        text = self._money_texts.get(cents)
        if text is None:
            text = self._money_texts[cents] = _money(cents)
        return text

    def _between(self, low: int, high: int) -> int:
        return low + int(self._random() * (high - low))

    def _pick(self, values: Sequence[Any], cum_weights: list[float]) -> Any:
        """One of ``values`` by cumulative weights (like ``random.choices``, but cheaper)."""
        last = len(cum_weights) - 1
        return values[bisect_right(cum_weights, self._random() * cum_weights[-1], 0, last)]

    def _timestamp(self, ms: int) -> str:
        """ISO-8601 UTC with milliseconds, e.g. ``2026-01-15T10:00:00.123Z``."""
        hour, rest = divmod(ms, MS_PER_HOUR)
        prefix = self._hour_prefixes.get(hour) or self._hour_prefix(hour)
        second, millis = divmod(rest, MS_PER_SECOND)
        return prefix + _MINUTE_SECOND[second] + _MILLIS_Z[millis]

    def _hour_prefix(self, hour: int) -> str:
        day, hour_of_day = divmod(hour, 24)
        prefix = f"{(_EPOCH + timedelta(days=day)).isoformat()}T{hour_of_day:02d}:"
        self._hour_prefixes[hour] = prefix
        return prefix

    def _refill_event_ids(self) -> None:
        block = self.rng.randbytes(16 * _ID_BLOCK).hex()
        self._event_ids.extend(block[i : i + 32] for i in range(0, len(block), 32))

    def _next_payment_id(self) -> str:
        self._payment_counter += 1
        return "pay_" + _scramble(self._payment_counter, self._payment_salt)

    def _next_shipment_id(self) -> str:
        self._shipment_counter += 1
        return "shp_" + _scramble(self._shipment_counter, self._shipment_salt)

    # --- reference data --------------------------------------------------------------------

    def _make_products(self) -> None:
        rng = self.rng
        names: set[str] = set()
        number = 0
        for category, (cat_weight, low, high, nouns) in _CATEGORIES.items():
            for _ in range(_PRODUCTS_PER_CATEGORY):
                while True:
                    name = f"{rng.choice(_BRANDS)} {rng.choice(nouns)}{rng.choice(_VARIANTS)}"
                    if name not in names:
                        break
                names.add(name)
                number += 1
                product_id = f"prd_{number:04d}"
                dollars = int(math.exp(rng.uniform(math.log(low), math.log(high))) / 100)
                if rng.random() < _SUB_CENT_SHARE:  # 3 or 4 decimals, e.g. 2.4999 or 0.125
                    if rng.random() < 0.5:
                        ending = rng.choice(_SUB_CENT_ENDINGS)
                    else:  # the last two of four decimals are never 00
                        ending = rng.randrange(1, 100) + 100 * rng.randrange(100)
                    if rng.random() < _SUB_CENT_BELOW_ONE and ending >= 100:
                        dollars = 0
                    reprice_ending = ending
                else:
                    ending = rng.choice(_CENT_ENDINGS)
                    reprice_ending = _CENT_REPRICE_ENDING
                self._reprice_ending[product_id] = reprice_ending
                self._price_units[product_id] = max(
                    dollars * UNIT_PRICE_SCALE + ending, reprice_ending
                )
                self.products.append(
                    {
                        "product_id": product_id,
                        "product_name": name,
                        "category": category,
                        "price": 0.0,
                        "active": rng.random() >= 0.04,
                    }
                )
                weight = cat_weight / _PRODUCTS_PER_CATEGORY * rng.lognormvariate(0.0, 0.8)
                self._product_weights.append(weight)

    def _evolve_products(self) -> None:
        """A new day: a few prices change and a few products are (de)listed."""
        rng = self.rng
        for product in self.products:
            if rng.random() < 0.03:
                product_id = product["product_id"]
                factor = rng.uniform(0.8, 1.15)
                dollars = int(self._price_units[product_id] * factor / UNIT_PRICE_SCALE)
                self._price_units[product_id] = (
                    dollars * UNIT_PRICE_SCALE + self._reprice_ending[product_id]
                )
            if rng.random() < 0.004:
                product["active"] = not product["active"]

    def _refresh_catalogue(self) -> None:
        active: list[str] = []
        weights: list[float] = []
        if not any(product["active"] for product in self.products):
            self.products[0]["active"] = True  # keep the shop open
        for product, weight in zip(self.products, self._product_weights, strict=True):
            # The reference price is money (2 decimals): the unit price rounded to cents.
            product["price"] = _to_cents(self._price_units[product["product_id"]]) / 100
            if product["active"]:
                active.append(product["product_id"])
                weights.append(weight)
        self._active_ids = active
        self._active_cum = _cum(weights)

    def _new_customer(self, created_ms: int) -> str:
        rng = self.rng
        number = len(self._customer_ids) + 1
        customer_id = f"cus_{number:07d}"
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        country = self._pick(_COUNTRIES, self._country_cum)
        record = {
            "customer_id": customer_id,
            "name": f"{first} {last}",
            "email": f"{first}.{last}.{number}@example.com".lower(),
            "country": country,
            "created_at": self._timestamp(created_ms),
        }
        self.customers.append(orjson.dumps(record))
        self._customer_ids.append(customer_id)
        self._customer_local.append(_LOCAL_CURRENCY.get(country))
        return customer_id

    def _make_customers(self) -> None:
        count = min(max(self.orders_per_day // 2, 50), 20_000)
        times = sorted(
            self.start_ms - self._between(MS_PER_HOUR, 730 * MS_PER_DAY) for _ in range(count)
        )
        for created_ms in times:
            self._new_customer(created_ms)

    def _customer_for(self, order_ms: int, day_ms: int) -> tuple[str, str]:
        """The ordering customer and the order's currency."""
        if self._random() < 0.04:  # a first order right after signing up
            earliest = max(day_ms, order_ms - 3 * MS_PER_HOUR)
            self._new_customer(self._between(earliest, order_ms + 1))
            index = len(self._customer_ids) - 1
        else:  # older customers order more often than recent sign-ups
            index = int(len(self._customer_ids) * self._random() ** 1.5)
        local = self._customer_local[index]
        if local is not None and self._random() < local[1]:
            return self._customer_ids[index], local[0]
        return self._customer_ids[index], CURRENCY

    def _add_signups(self, day_ms: int) -> None:
        """Customers who sign up without ordering (yet); they appear in the day's snapshot."""
        count = self.rng.randrange(self.orders_per_day // 100 + 2)
        times = sorted(day_ms + self._between(0, MS_PER_DAY) for _ in range(count))
        for created_ms in times:
            self._new_customer(created_ms)

    def _write_snapshot(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        customers_path = directory / "customers.json"
        products_path = directory / "products.json"
        customers_path.write_bytes(_json_array(self.customers))
        products_path.write_bytes(_json_array([orjson.dumps(p) for p in self.products]))
        return customers_path, products_path

    # --- event emission --------------------------------------------------------------------

    def _emit(
        self, topic: int, event_type: str, event_ms: int, tail: str, *, orphan: bool = False
    ) -> None:
        """Queue one valid event by arrival time, with at most one fault.

        ``tail`` is the JSON after ``produced_at``'s value: source_system, the entity fields
        and the closing brace.
        """
        if event_ms >= self.horizon_ms:
            raise _PastHorizon
        random_ = self._random
        prefixes = self._hour_prefixes
        produced_ms = event_ms + 3 + int(random_() ** 3 * 2000)
        hour, rest = divmod(event_ms, MS_PER_HOUR)
        event_prefix = prefixes.get(hour) or self._hour_prefix(hour)
        second, millis = divmod(rest, MS_PER_SECOND)
        produced_hour, produced_rest = divmod(produced_ms, MS_PER_HOUR)
        produced_prefix = prefixes.get(produced_hour) or self._hour_prefix(produced_hour)
        produced_second, produced_millis = divmod(produced_rest, MS_PER_SECOND)
        ids = self._event_ids
        if not ids:
            self._refill_event_ids()
        line = "".join(
            (
                '{"event_id":"',
                ids.pop(),
                _EVENT_HEAD[event_type],
                event_prefix,
                _MINUTE_SECOND[second],
                _MILLIS_Z[millis],
                _PRODUCED_AT,
                produced_prefix,
                _MINUTE_SECOND[produced_second],
                _MILLIS_Z[produced_millis],
                tail,
            )
        ).encode()
        self._valid[topic] += 1
        if orphan:
            self._orphans[topic] += 1

        self._seq += 1
        draw = random_()
        if draw >= self._p_any:
            bucket = self._queue.get(produced_ms // MS_PER_MINUTE)
            if bucket is None:
                self._queue[produced_ms // MS_PER_MINUTE] = [(produced_ms, self._seq, topic, line)]
            else:
                bucket.append((produced_ms, self._seq, topic, line))
        else:
            self._fault(draw, topic, event_ms, produced_ms, line, orphan)

    def _enqueue(self, arrival_ms: int, topic: int, line: bytes) -> None:
        self._seq += 1
        self._queue.setdefault(arrival_ms // MS_PER_MINUTE, []).append(
            (arrival_ms, self._seq, topic, line)
        )

    def _fault(
        self, draw: float, topic: int, event_ms: int, arrival_ms: int, line: bytes, orphan: bool
    ) -> None:
        if draw < self._p_late:
            self._late[topic] += 1
            self._enqueue(arrival_ms + self._between(MS_PER_HOUR, 12 * MS_PER_HOUR), topic, line)
        elif draw < self._p_out_of_order:
            self._out_of_order[topic] += 1
            delay = self._between(MS_PER_MINUTE, 30 * MS_PER_MINUTE)
            self._enqueue(arrival_ms + delay, topic, line)
        elif draw < self._p_duplicate:
            self._duplicates[topic] += 1
            self._enqueue(arrival_ms, topic, line)
            if self._random() < 0.8:  # producer retry
                arrival_ms += self._between(1, 5 * MS_PER_SECOND)
            else:  # replay from an upstream log
                arrival_ms += self._between(MS_PER_MINUTE, 6 * MS_PER_HOUR)
            self._enqueue(arrival_ms, topic, line)
        elif draw < self._p_malformed:
            self._malformed[topic] += 1
            garbage = self._garbage(topic, line)
            if self._random() < 0.5:
                self._enqueue(arrival_ms, topic, garbage)
                self._enqueue(arrival_ms, topic, line)
            else:
                self._enqueue(arrival_ms, topic, line)
                self._enqueue(arrival_ms, topic, garbage)
        else:
            self._enqueue(arrival_ms, topic, line)
            if not orphan:
                self._emit_orphan(event_ms)

    def _emit_orphan(self, after_ms: int) -> None:
        """A valid payment or shipment event for an order that never gets ``order_created``."""
        rng = self.rng
        event_ms = after_ms + self._between(0, 2 * MS_PER_HOUR)
        if event_ms >= self.horizon_ms:
            return
        if self._last_orphan_order is not None and rng.random() < 0.3:
            order_id = self._last_orphan_order
        else:
            self._orphan_counter += 1
            order_id = "ord_" + _scramble(_ORPHAN_ID_BASE + self._orphan_counter, self._order_salt)
            self._last_orphan_order = order_id
        if rng.random() < 0.6:
            event_type, status = rng.choice(
                (
                    ("payment_authorized", "authorized"),
                    ("payment_captured", "captured"),
                    ("payment_failed", "failed"),
                    ("payment_refunded", "refunded"),
                )
            )
            tail = self._payment_tail(
                self._next_payment_id(),
                order_id,
                _money(self._between(499, 25_000)),
                rng.choice(_ORPHAN_CURRENCIES),
                rng.choice(_PAYMENT_METHODS),
                status,
            )
            self._emit(_PAYMENTS, event_type, event_ms, tail, orphan=True)
        else:
            event_type, status = rng.choice(
                (
                    ("shipment_created", "created"),
                    ("shipment_dispatched", "in_transit"),
                    ("shipment_delivered", "delivered"),
                )
            )
            shipment_head = self._shipment_head(
                self._next_shipment_id(), order_id, rng.choice(self._carrier_names)
            )
            self._emit(
                _SHIPMENTS, event_type, event_ms, shipment_head + status + '"}\n', orphan=True
            )

    def _drain(self, before_minute: float) -> None:
        """Write, in arrival order, every queued line that arrives before ``before_minute``.

        Callers guarantee that nothing queued later arrives before that minute, so the files
        come out sorted by (arrival time, queue order).
        """
        queue = self._queue
        writes = [handle.write for handle in self._files]
        if before_minute == math.inf:
            minutes: Sequence[int] = sorted(queue)
        else:
            minutes = range(self._drained_minute, int(before_minute))
            self._drained_minute = max(self._drained_minute, int(before_minute))
        for minute in minutes:
            bucket = queue.pop(minute, None)
            if bucket is None:
                continue
            bucket.sort()
            for _, _, topic, line in bucket:
                writes[topic](line)

    # --- malformed lines -------------------------------------------------------------------

    def _garbage(self, topic: int, line: bytes) -> bytes:
        """A garbage line derived from a valid one; it breaks a rule of the event contract."""
        rng = self.rng
        topic_name = TOPICS[topic]
        kinds, cum_weights = self._malformed_tables[topic, b'"items":[' in line]
        kind: str = self._pick(kinds, cum_weights)
        counts = self._malformed_kinds[topic]
        counts[kind] = counts.get(kind, 0) + 1

        body = line.rstrip(b"\n")
        if kind == "truncated":  # a strict prefix of the real line
            return body[: self._between(1, len(body))] + b"\n"
        event: dict[str, Any] = orjson.loads(body)
        event["event_id"] = f"{rng.getrandbits(128):032x}"
        raw = b""  # JSON text for the _RAW placeholder value
        repeated = b""  # a '"key":value' pair for the _DUPLICATE placeholder key
        if kind == "invalid_json":
            variant = rng.randrange(5)
            if variant == 0:
                out = repr(event).encode()  # single quotes: a Python dict, not JSON
            elif variant == 1:
                out = orjson.dumps(event)[:-1] + b",}"  # trailing comma
            elif variant == 2:
                out = orjson.dumps(event).replace(b'":', b'"=', 1)
            elif variant == 3:
                out = orjson.dumps(event) + orjson.dumps(event)  # two objects on one line
            else:
                out = rng.choice(
                    (
                        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                        b"ERROR producer: delivery timed out",
                        b"\x00\x00\x00\x00",
                    )
                )
            return out + b"\n"
        if kind == "invalid_utf8":  # inside event_type, so a lenient decoder still rejects it
            event_type: str = event["event_type"]
            bad = rng.choice((b"\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"))
            mangled = b'"' + event_type[:5].encode() + bad + event_type[5:].encode() + b'"'
            return (
                orjson.dumps(event).replace(b'"' + event_type.encode() + b'"', mangled, 1) + b"\n"
            )
        if kind == "missing_field":
            required = list(_ENVELOPE_FIELDS + _ENTITY_FIELDS[topic_name])
            if event["event_type"] == "order_created":
                required.append("items")
            del event[rng.choice(required)]
        elif kind == "wrong_type":
            self._wrong_type(topic_name, event)
        elif kind == "unknown_event_type":
            event["event_type"] = rng.choice(_UNKNOWN_EVENT_TYPES[topic_name])
        elif kind == "unsupported_version":
            event["event_version"] = EVENT_VERSION + 1
        elif kind == "bad_timestamp":
            key = rng.choice(("event_timestamp", "produced_at"))
            value: str = event[key]
            event[key] = rng.choice(
                (
                    value.replace("T", " ").rstrip("Z"),
                    value[:-1] + "+01:00",
                    value[:-1],
                    value[:8] + "32" + value[10:],  # no such day
                    value[:11] + "25" + value[13:],  # no such hour
                )
            )
        elif kind == "invalid_value":
            self._invalid_value(topic_name, event)
        elif kind in ("non_finite_money", "money_out_of_range"):
            container, key = self._money_target(topic_name, event)
            container[key] = _RAW
            raw = rng.choice(_NON_FINITE if kind == "non_finite_money" else _TOO_LARGE)
        elif kind == "money_too_precise":  # one decimal too many, within a cent of the value
            container, key = self._money_target(topic_name, event)
            digits = 4 if key == "unit_price" else 2
            whole, fraction = divmod(round(container[key] * 10**digits), 10**digits)
            container[key] = _RAW
            raw = f"{whole}.{fraction:0{digits}d}{rng.randrange(1, 10)}".encode()
        elif kind == "negative_money":
            container, key = self._money_target(topic_name, event)
            container[key] = -container[key] if container[key] else -0.01
        elif kind == "money_as_string":
            container, key = self._money_target(topic_name, event)
            digits = 4 if key == "unit_price" else 2
            container[key] = f"{container[key]:.{digits}f}"
        elif kind == "duplicate_key":
            repeated = self._repeated_key(topic_name, event)
        elif kind == "timestamp_out_of_range":
            key = rng.choice(("event_timestamp", "produced_at"))
            event[key] = rng.choice(_OUT_OF_RANGE_TIMESTAMPS)
        elif kind == "timestamp_not_z":
            key = rng.choice(("event_timestamp", "produced_at"))
            value = event[key]
            event[key] = value[:-1] + rng.choice(("+00:00", "", "z", "-00:00", "+0000"))
        elif kind == "bad_currency":
            event["currency"] = rng.choice(_BAD_CURRENCIES)
        elif kind == "bad_quantity":
            item = event["items"][int(self._random() * len(event["items"]))]
            item["quantity"] = _RAW
            raw = rng.choice(_BAD_QUANTITIES)
        else:  # bad_version: a value other than the integer 1
            event["event_version"] = _RAW
            raw = rng.choice(_BAD_VERSIONS)
        out = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
        if raw:
            out = out.replace(b'"' + _RAW.encode() + b'"', raw, 1)
        if repeated:
            out = out.replace(b'"' + _DUPLICATE.encode() + b'":0', repeated, 1)
        return out

    def _money_target(self, topic_name: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The object and key of a money value to spoil: the event's amount or a unit price."""
        items = event.get("items")
        if items and self._random() < 0.4:
            return items[int(self._random() * len(items))], "unit_price"
        return event, _MONEY_FIELD[topic_name]

    def _repeated_key(self, topic_name: str, event: dict[str, Any]) -> bytes:
        """Mark a place for a repeated key and return the key with a second, different value.

        The second value is valid on its own (except a negated amount), so only the repetition
        makes the line invalid: readers disagree on which value wins.
        """
        rng = self.rng
        options = [_ID_FIELD[topic_name], "event_type", "event_timestamp"]
        if topic_name != "orders":
            options.append("order_id")
        if topic_name in _MONEY_FIELD:
            options += [_MONEY_FIELD[topic_name], "currency"]
        if event.get("items"):
            options.append("quantity")
        key = rng.choice(options)
        value: Any
        if key == "quantity":
            item = event["items"][0]
            item[_DUPLICATE] = 0
            value = item["quantity"] % 3 + 1
        else:
            event[_DUPLICATE] = 0
            current = event[key]
            if key == "event_type":
                value = rng.choice(
                    [
                        t
                        for t, topic in EVENT_TYPE_TOPIC.items()
                        if topic == topic_name and t != current
                    ]
                )
            elif key == "event_timestamp":
                value = event["produced_at"]  # a valid, later timestamp
            elif key == "currency":
                value = "EUR" if current != "EUR" else CURRENCY
            elif key == _MONEY_FIELD.get(topic_name):
                value = rng.choice((-current if current else -5.0, round(current + 5.0, 2)))
            else:  # an id
                value = f"{current[:4]}{rng.getrandbits(64):016x}"
        return f'"{key}":'.encode() + orjson.dumps(value)

    def _wrong_type(self, topic_name: str, event: dict[str, Any]) -> None:
        rng = self.rng
        options = ["version", "id", "timestamp"]
        if topic_name in _MONEY_FIELD:
            options.append("money")
        if event.get("items"):
            options += ["items", "quantity"]
        option = rng.choice(options)
        if option == "version":
            event["event_version"] = str(event["event_version"])
        elif option == "id":
            event[_ID_FIELD[topic_name]] = rng.randrange(1, 10**9)
        elif option == "timestamp":
            event["event_timestamp"] = self._between(1_700_000_000_000, 1_800_000_000_000)
        elif option == "money":
            key = _MONEY_FIELD[topic_name]
            event[key] = f"{event[key]:.2f}"
        elif option == "items":
            event["items"] = orjson.dumps(event["items"]).decode()
        else:
            event["items"][0]["quantity"] = rng.choice(("2", 1.5, None))

    def _invalid_value(self, topic_name: str, event: dict[str, Any]) -> None:
        rng = self.rng
        options = ["empty_id"]
        if topic_name in _MONEY_FIELD:
            options += ["currency", "negative"]
        if event.get("items"):
            options += ["total_mismatch", "negative_quantity"]
        option = rng.choice(options)
        if option == "empty_id":
            event[_ID_FIELD[topic_name]] = ""
        elif option == "currency":
            event["currency"] = rng.choice(("usd", "US", "DOLLAR"))
        elif option == "negative":
            key = _MONEY_FIELD[topic_name]
            event[key] = -event[key] if event[key] else -1.0
        elif option == "total_mismatch":
            event["order_total"] = round(event["order_total"] + rng.choice((5.0, 0.5, 10.0)), 2)
        else:
            event["items"][0]["quantity"] = -1

    # --- order lifecycle -------------------------------------------------------------------

    def _pick_product(self) -> str:
        cum = self._active_cum
        index = bisect_right(cum, self._random() * cum[-1], 0, len(cum) - 1)
        return self._active_ids[index]

    def _quantity(self) -> int:
        return 1 + bisect_right(self._qty_cum, self._random() * self._qty_cum[-1], 0, 2)

    def _new_basket(self) -> list[list[Any]]:
        n_lines = 1 + bisect_right(self._line_cum, self._random() * self._line_cum[-1], 0, 4)
        n_lines = min(n_lines, len(self._active_ids))
        chosen: list[str] = []
        while len(chosen) < n_lines:
            product_id = self._pick_product()
            if product_id not in chosen:
                chosen.append(product_id)
        return [[pid, self._quantity(), self._price_units[pid]] for pid in chosen]

    def _change_basket(self, basket: list[list[Any]]) -> None:
        rng = self.rng
        action = rng.random()
        if action < 0.4 and len(basket) < 5 and len(basket) < len(self._active_ids):
            present = {line[0] for line in basket}
            while True:
                product_id = self._pick_product()
                if product_id not in present:
                    break
            basket.append([product_id, self._quantity(), self._price_units[product_id]])
        elif action < 0.7 and len(basket) > 1:
            del basket[rng.randrange(len(basket))]
        else:
            line = basket[rng.randrange(len(basket))]
            line[1] = rng.choice([q for q in (1, 2, 3, 4) if q != line[1]])

    def _order_event(
        self, order: _Order, event_type: str, event_ms: int, status: str, *, with_items: bool
    ) -> None:
        life = order.life
        parts = [
            order.source_tail,
            '"order_id":"',
            life.order_id,
            '","customer_id":"',
            order.customer_id,
            '","order_total":',
            self._money_text(order.total_cents()),
            self._currency_fragments[life.currency][0],
            status,
            '"}\n',
        ]
        if not with_items:
            self._emit(_ORDERS, event_type, event_ms, "".join(parts))
            if event_type == "order_canceled":
                life.cancels.append(event_ms)
            return
        items: tuple[LineItem, ...] = tuple([(pid, qty, price) for pid, qty, price in order.basket])
        cache = self._item_json
        fragments = []
        for item in items:
            fragment = cache.get(item)
            if fragment is None:
                product_id, quantity, price = item
                fragment = (
                    f'{{"product_id":"{product_id}","quantity":{quantity},'
                    f'"unit_price":{_unit_price(price)}}}'
                )
                cache[item] = fragment
            fragments.append(fragment)
        parts[-1] = '"'
        parts.append(',"items":[')
        parts.append(",".join(fragments))
        parts.append("]}\n")
        self._emit(_ORDERS, event_type, event_ms, "".join(parts))
        life.baskets.append((event_ms, items))

    def _payment_tail(
        self, payment_id: str, order_id: str, amount: str, currency: str, method: str, status: str
    ) -> str:
        return "".join(
            (
                self._source_tails[_PAYMENT_SOURCE],
                '"payment_id":"',
                payment_id,
                '","order_id":"',
                order_id,
                '","amount":',
                amount,
                self._currency_fragments[currency][1],
                ',"payment_method":"',
                method,
                '","payment_status":"',
                status,
                '"}\n',
            )
        )

    def _payment_event(
        self,
        order: _Order,
        event_type: str,
        event_ms: int,
        payment_id: str,
        amount_cents: int,
        method: str,
        status: str,
    ) -> None:
        life = order.life
        tail = self._payment_tail(
            payment_id, life.order_id, self._money_text(amount_cents), life.currency, method, status
        )
        if event_type == "payment_failed":
            reason = _FAILURE_REASONS[int(self._random() * len(_FAILURE_REASONS))]
            tail = tail[:-2] + ',"failure_reason":"' + reason + '"}\n'
        self._emit(_PAYMENTS, event_type, event_ms, tail)
        if event_type == "payment_captured":
            life.captures.append((event_ms, amount_cents))
        elif event_type == "payment_refunded":
            life.refunds.append((event_ms, amount_cents))

    def _shipment_head(self, shipment_id: str, order_id: str, carrier: str) -> str:
        """The shipment event tail up to the value of ``shipment_status``."""
        return "".join(
            (
                self._source_tails[_SHIPMENT_SOURCE],
                '"shipment_id":"',
                shipment_id,
                '","order_id":"',
                order_id,
                '","carrier":"',
                carrier,
                '","shipment_status":"',
            )
        )

    def _order(self, created_ms: int, day_ms: int) -> None:
        self._order_counter += 1
        order_id = "ord_" + _scramble(self._order_counter, self._order_salt)
        customer_id, currency = self._customer_for(created_ms, day_ms)
        source = _ORDER_SOURCES[0] if self._random() < 0.62 else _ORDER_SOURCES[1]
        order = _Order(
            life=OrderLifecycle(order_id, created_ms, currency),
            customer_id=customer_id,
            source_tail=self._source_tails[source],
            basket=self._new_basket(),
        )
        try:
            self._lifecycle(order)
        except _PastHorizon:
            self._in_flight += 1
        self.truth.add(order.life)

    def _lifecycle(self, order: _Order) -> None:
        """Decide and emit one order's events in time order, until the horizon stops it."""
        random_ = self._random
        between = self._between
        t = order.life.created_ms
        self._order_event(order, "order_created", t, "created", with_items=True)

        draw = random_()
        n_updates = 2 if draw < 0.02 else 1 if draw < 0.10 else 0
        for _ in range(n_updates):  # basket changes before payment
            t += between(MS_PER_MINUTE, 45 * MS_PER_MINUTE)
            self._change_basket(order.basket)
            self._order_event(order, "order_updated", t, "updated", with_items=True)
        if random_() < 0.03:  # e.g. a new delivery address: no basket change
            t += between(MS_PER_MINUTE, 30 * MS_PER_MINUTE)
            self._order_event(order, "order_updated", t, "updated", with_items=False)

        if random_() < 0.035:  # canceled before any payment
            t += between(5 * MS_PER_MINUTE, 8 * MS_PER_HOUR)
            self._order_event(order, "order_canceled", t, "canceled", with_items=False)
            return

        total = order.total_cents()
        method = self._pick(_PAYMENT_METHODS, self._method_cum)
        attempt = 0
        while True:
            attempt += 1
            if attempt == 1:
                t += between(20 * MS_PER_SECOND, 15 * MS_PER_MINUTE)
            else:
                t += between(5 * MS_PER_MINUTE, 20 * MS_PER_HOUR)
            payment_id = self._next_payment_id()
            if random_() < (0.07 if attempt == 1 else 0.35):
                self._payment_event(order, "payment_failed", t, payment_id, total, method, "failed")
                if attempt >= 3 or random_() < 0.3:  # the customer gives up
                    if random_() < 0.5:
                        t += between(MS_PER_HOUR, 2 * MS_PER_DAY)
                        self._order_event(order, "order_canceled", t, "canceled", with_items=False)
                    return
                if random_() < 0.4:
                    method = self._pick(_PAYMENT_METHODS, self._method_cum)
                continue
            self._payment_event(
                order, "payment_authorized", t, payment_id, total, method, "authorized"
            )
            if random_() < 0.01:  # canceled between authorization and capture
                t += between(10 * MS_PER_MINUTE, 6 * MS_PER_HOUR)
                self._order_event(order, "order_canceled", t, "canceled", with_items=False)
                return
            if random_() < 0.85:
                t += between(2 * MS_PER_SECOND, 5 * MS_PER_MINUTE)
            else:  # captured later, e.g. when the warehouse accepts the order
                t += between(MS_PER_HOUR, 24 * MS_PER_HOUR)
            self._payment_event(order, "payment_captured", t, payment_id, total, method, "captured")
            break

        if random_() < 0.03:  # canceled after capture, usually refunded
            t += between(10 * MS_PER_MINUTE, 20 * MS_PER_HOUR)
            self._order_event(order, "order_canceled", t, "canceled", with_items=False)
            if random_() < 0.9:
                t += between(MS_PER_HOUR, 3 * MS_PER_DAY)
                self._payment_event(
                    order, "payment_refunded", t, payment_id, total, method, "refunded"
                )
            return

        carrier = self._pick(self._carrier_names, self._carrier_cum)
        _, transit_low, transit_high = _CARRIERS[carrier]
        head = self._shipment_head(self._next_shipment_id(), order.life.order_id, carrier)
        t += between(MS_PER_HOUR, 30 * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_created", t, head + 'created"}\n')
        t += between(2 * MS_PER_HOUR, 40 * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_dispatched", t, head + 'in_transit"}\n')
        order.life.dispatches.append(t)
        if random_() < 0.04:  # delivery attempt failed
            t += between(12 * MS_PER_HOUR, 3 * MS_PER_DAY)
            self._emit(_SHIPMENTS, "shipment_failed", t, head + 'failed"}\n')
            if random_() < 0.15:  # lost for good: refund the customer
                t += between(MS_PER_HOUR, 2 * MS_PER_DAY)
                self._payment_event(
                    order, "payment_refunded", t, payment_id, total, method, "refunded"
                )
                return
            t += between(6 * MS_PER_HOUR, 2 * MS_PER_DAY)
            self._emit(_SHIPMENTS, "shipment_dispatched", t, head + 'in_transit"}\n')
            order.life.dispatches.append(t)
        t += between(transit_low * MS_PER_HOUR, transit_high * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_delivered", t, head + 'delivered"}\n')
        order.life.deliveries.append(t)

        if random_() < 0.06:  # returned after delivery: full or partial refund
            t += between(MS_PER_DAY, 14 * MS_PER_DAY)
            amount = total
            if len(order.basket) > 1 and random_() < 0.4:  # one line: its exact value, in cents
                _, quantity, price = order.basket[int(random_() * len(order.basket))]
                amount = _to_cents(quantity * price)
            self._payment_event(
                order, "payment_refunded", t, payment_id, amount, method, "refunded"
            )

    # --- driver ----------------------------------------------------------------------------

    def _order_times(self, day_ms: int, weekday: int) -> list[int]:
        rng = self.rng
        factor = _WEEKDAY_FACTORS[weekday] * (0.9 + 0.2 * rng.random())
        count = round(self.orders_per_day * factor)
        hour_cum = self._hour_cum_weekend if weekday >= 5 else self._hour_cum_weekday
        hours = rng.choices(range(24), cum_weights=hour_cum, k=count)
        return sorted(
            day_ms + hour * MS_PER_HOUR + int(rng.random() * MS_PER_HOUR) for hour in hours
        )

    def run(self) -> GenerationSummary:
        events_dir = self.out_dir / "events"
        snapshots_dir = self.out_dir / "snapshots"
        events_dir.mkdir(parents=True, exist_ok=True)
        paths = [events_dir / f"{topic}.ndjson" for topic in TOPICS]

        self._make_products()
        self._make_customers()
        try:
            for path in paths:
                self._files.append(path.open("wb", buffering=1 << 20))
            for day in range(self.days):
                day_date = self.start + timedelta(days=day)
                day_ms = self.start_ms + day * MS_PER_DAY
                if day:
                    self._evolve_products()
                self._refresh_catalogue()
                for created_ms in self._order_times(day_ms, day_date.weekday()):
                    # Everything queued from now on arrives after created_ms.
                    if created_ms // MS_PER_MINUTE > self._drained_minute:
                        self._drain(created_ms // MS_PER_MINUTE)
                    self._order(created_ms, day_ms)
                self._add_signups(day_ms)
                self._write_snapshot(snapshots_dir / day_date.isoformat())
                if self.progress is not None:
                    self.progress(day + 1)
            self._drain(math.inf)
        finally:
            for handle in self._files:
                handle.close()

        customers_path, products_path = self._write_snapshot(self.out_dir)
        products = {
            p["product_id"]: ProductInfo(p["product_name"], p["category"]) for p in self.products
        }
        truth_path = self.out_dir / "truth.json"
        truth_path.write_bytes(
            orjson.dumps(self.truth.answers(products), option=orjson.OPT_INDENT_2) + b"\n"
        )

        topics = {
            name: TopicSummary(
                path=paths[i],
                lines=self._valid[i] + self._duplicates[i] + self._malformed[i],
                valid_events=self._valid[i],
                duplicates=self._duplicates[i],
                malformed=self._malformed[i],
                orphans=self._orphans[i],
                out_of_order=self._out_of_order[i],
                late=self._late[i],
                malformed_by_kind=dict(sorted(self._malformed_kinds[i].items())),
            )
            for i, name in enumerate(TOPICS)
        }
        return GenerationSummary(
            out_dir=self.out_dir,
            seed=self.seed,
            days=self.days,
            first_day=self.start,
            orders=self.truth.orders,
            in_flight=self._in_flight,
            customers=len(self._customer_ids),
            products=len(self.products),
            topics=topics,
            customers_path=customers_path,
            products_path=products_path,
            snapshots_dir=snapshots_dir,
            truth_path=truth_path,
        )


def generate(
    out_dir: Path,
    *,
    days: int,
    orders_per_day: int,
    seed: int,
    faults: FaultRates | None = FaultRates(),
    start: date = date(2026, 1, 1),
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Simulate ``days`` days of a shop from ``start`` and write events, snapshots and truth.

    Writes into ``out_dir``: ``events/{orders,payments,shipments}.ndjson`` (arrival order,
    faults injected per ``faults``: the default :class:`FaultRates` when left out, none at all
    when ``None``, as for :meth:`FaultRates.none`), ``customers.json`` and
    ``products.json`` (final reference snapshot), ``snapshots/YYYY-MM-DD/`` (one snapshot per
    day) and ``truth.json`` (the docs/metrics.md answers). ``orders_per_day`` is the mean daily
    volume (weekday and random variation around it). ``progress`` is called after each
    simulated day with the number of days completed. The same arguments give byte-identical
    output.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if orders_per_day < 0:
        raise ValueError(f"orders_per_day must not be negative, got {orders_per_day}")
    simulator = _Simulator(
        Path(out_dir),
        days=days,
        orders_per_day=orders_per_day,
        seed=seed,
        faults=faults if faults is not None else FaultRates.none(),
        start=start,
        progress=progress,
    )
    return simulator.run()
