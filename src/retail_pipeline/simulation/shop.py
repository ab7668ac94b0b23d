"""The shop model: a deterministic retail shop and every decision it makes.

It keeps a catalogue (products in eight categories, prices that change and products that are
(de)listed day by day) and customers (who sign up, some paying in GBP or EUR), and places orders
by hour of day and weekday. Each order runs through a lifecycle of order, payment and shipment
events: basket updates, failed and retried payments, cancellations before and after payment,
refunds (whole or one line), failed and re-dispatched shipments. What it decides for an order is
recorded in an :class:`~retail_pipeline.simulation.truth.OrderLifecycle` and folded into the
truth; each event goes out as a line (:mod:`~retail_pipeline.simulation.encoding`) through a
``Deliver`` callable, the fault injector (:mod:`~retail_pipeline.simulation.faults`).

Prices are integers in 1/10000 (about 15% of products have sub-cent prices such as 0.125 or
2.4999); ``order_total`` is the exact sum of quantity * unit_price rounded to cents half away
from zero. About 40% of orders are created at contract version 2 (``order_created`` with a
``channel`` and a ``discount``): a third of those get an order-level discount of 5-20% of the
exact sum of the items, in whole cents, and their ``order_total`` and payments are net of it;
a discounted order's basket does not change afterwards (a version-1 ``order_updated`` could not
say the discount). The simulated world stops at the horizon (the end of the last day): the events an
order would have after it have not happened yet, so recent orders are still in flight. Reference
records have the contract's fields in the contract's order (``REFERENCE_FIELDS``).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from retail_pipeline.events.contract import CHANNELS, REFERENCE_FIELDS, REPORTING_CURRENCY, TOPICS
from retail_pipeline.simulation.draws import Draws, cumulative
from retail_pipeline.simulation.encoding import (
    MS_PER_MINUTE,
    MS_PER_SECOND,
    ORDER_CREATED_V2,
    SHIPMENT_END,
    EventEncoder,
    scramble,
    to_cents,
)
from retail_pipeline.simulation.truth import (
    CENTS_PER_UNIT_PRICE,
    MS_PER_DAY,
    MS_PER_HOUR,
    UNIT_PRICE_SCALE,
    LineItem,
    OrderLifecycle,
    ProductInfo,
    TruthAccumulator,
)

_CATALOGUE = """
Clothing|0.22|999|14999|T-Shirt, Hoodie, Jeans, Rain Jacket, Sneakers, Wool Socks, Chinos
Electronics|0.18|1999|89999|Wireless Earbuds, Bluetooth Speaker, USB-C Charger, Smartwatch, Webcam
Home & Kitchen|0.16|799|29999|Chef's Knife, Coffee Grinder, Cast Iron Pan, Throw Blanket, Desk Lamp
Beauty|0.12|499|7999|Face Serum, Shampoo, Lip Balm, Sunscreen SPF 50, Hand Cream
Sports & Outdoors|0.10|999|39999|Yoga Mat, Running Belt, Camping Stove, Water Bottle, Dumbbell Set
Books|0.10|699|4999|Cookbook, Mystery Novel, Travel Guide, Data Handbook, Poetry Collection
Toys & Games|0.07|799|12999|Puzzle 1000pc, Board Game, Building Blocks, Plush Bear, Card Game
Grocery|0.05|249|3999|Espresso Beans, Green Tea, Olive Oil, Dark Chocolate, Granola
"""
"""One category a line: name|popularity weight|min price cents|max price cents|nouns."""
_CATEGORIES: dict[str, tuple[float, int, int, tuple[str, ...]]] = {
    name: (float(weight), int(low), int(high), tuple(nouns.split(", ")))
    for name, weight, low, high, nouns in (row.split("|") for row in _CATALOGUE.split("\n") if row)
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
_V2_SHARE = 0.4
"""The share of orders created at version 2 (channel and discount)."""
_CHANNEL_WEIGHTS = (45, 35, 12, 8)  # CHANNELS: web, mobile_app, store, marketplace
_DISCOUNT_SHARE = 0.35
"""The share of version-2 orders with a discount."""
_DISCOUNT_PERCENTS = (5, 10, 15, 20)
_PAYMENT_SOURCE = "payment-service"
_SHIPMENT_SOURCE = "fulfillment-service"

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
_ORPHAN_CURRENCIES = (REPORTING_CURRENCY,) * 8 + ("EUR", "GBP")
_ORPHAN_ID_BASE = 1 << 63
"""Orphan order ids count from here, so they never meet the shop's own."""
_ORDERS, _PAYMENTS, _SHIPMENTS = (
    TOPICS.index(name) for name in ("orders", "payments", "shipments")
)


class Deliver(Protocol):
    """Passes a valid event on to arrive at ``arrival_ms`` (or later); True when an orphan event
    should follow it (:meth:`~retail_pipeline.simulation.faults.FaultInjector.deliver`)."""

    def __call__(self, topic: int, arrival_ms: int, line: bytes, *, orphan: bool) -> bool: ...


class _PastHorizon(Exception):
    """An order's next event would happen after the simulated window ends."""


def _record(entity: str, **values: Any) -> dict[str, Any]:
    """A reference record with the contract's fields of ``entity``, in the contract's order."""
    names = [spec.name for spec in REFERENCE_FIELDS[entity]]
    if set(values) != set(names):
        raise ValueError(f"{entity} record fields {sorted(values)} are not the contract's {names}")
    return {name: values[name] for name in names}


@dataclass(slots=True)
class _Order:
    """The mutable state of one order while its lifecycle is being decided."""

    life: OrderLifecycle
    customer_id: str
    source: str
    """The ``source_system`` text (:meth:`EventEncoder.source`)."""
    basket: list[list[Any]]
    """Lines as ``[product_id, quantity, unit_price]``, the price in 1/10000 units."""
    channel_discount: tuple[str, int] | None = None
    """Version 2: (channel, discount in cents); None for an order created at version 1."""

    def total_cents(self) -> int:
        """Sum of quantity * unit_price less the discount, exact, then rounded to cents half
        away from zero."""
        exact: int = sum(quantity * price for _, quantity, price in self.basket)
        if self.channel_discount is not None:
            exact -= self.channel_discount[1] * CENTS_PER_UNIT_PRICE
        return (exact + CENTS_PER_UNIT_PRICE // 2) // CENTS_PER_UNIT_PRICE  # exact >= 0


_CREATED, _IN_TRANSIT, _FAILED, _DELIVERED = (
    status + SHIPMENT_END for status in ("created", "in_transit", "failed", "delivered")
)


class Shop:
    """The shop: its catalogue, its customers, and every order's lifecycle up to ``horizon_ms``.

    Events go out through ``deliver`` (the fault injector); ``truth`` accumulates what happened.
    """

    def __init__(
        self,
        draws: Draws,
        encoder: EventEncoder,
        deliver: Deliver,
        *,
        seed: int,
        orders_per_day: int,
        start_ms: int,
        horizon_ms: int,
    ) -> None:
        self.rng = draws.rng
        self._random = draws.random
        self._between = draws.between
        self._pick = draws.pick
        self._encoder = encoder
        self._line = encoder.line
        self._deliver = deliver
        self.orders_per_day = orders_per_day
        self.start_ms = start_ms
        self.horizon_ms = horizon_ms
        salts = random.Random(seed ^ 0x5EED)
        self._order_salt = salts.getrandbits(64)
        self._payment_salt = salts.getrandbits(64)
        self._shipment_salt = salts.getrandbits(64)
        self.truth = TruthAccumulator()
        self.observe: Callable[[OrderLifecycle], None] | None = None
        """Called with every finished order's lifecycle (tests audit figures with them)."""
        self.in_flight = 0
        """Orders whose lifecycle goes on past the horizon."""

        self._order_counter = 0
        self._orphan_counter = 0
        self._payment_counter = 0
        self._shipment_counter = 0
        self._last_orphan_order: str | None = None

        self._hour_cum_weekday = cumulative(_WEEKDAY_HOURS)
        self._hour_cum_weekend = cumulative(_WEEKEND_HOURS)
        self._line_cum = cumulative(_LINE_COUNT_WEIGHTS)
        self._qty_cum = cumulative(_QUANTITY_WEIGHTS)
        self._method_cum = cumulative(_PAYMENT_METHOD_WEIGHTS)
        self._carrier_names = tuple(_CARRIERS)
        self._carrier_cum = cumulative([spec[0] for spec in _CARRIERS.values()])
        self._country_cum = cumulative(_COUNTRY_WEIGHTS)
        self._channel_cum = cumulative(_CHANNEL_WEIGHTS)
        self._sources = {
            source: encoder.source(source)
            for source in (*_ORDER_SOURCES, _PAYMENT_SOURCE, _SHIPMENT_SOURCE)
        }

        self.products: list[dict[str, Any]] = []
        """The catalogue as reference records (``price`` as of the last refresh)."""
        self._product_weights: list[float] = []
        self._price_units: dict[str, int] = {}
        """Current unit price per product, in 1/10000."""
        self._reprice_ending: dict[str, int] = {}
        """The fraction (1/10000) a product's price ends in after a change; also its minimum."""
        self._active_ids: list[str] = []
        self._active_cum: list[float] = []
        self.customers: list[bytes] = []
        """The customers as serialised reference records."""
        self._customer_ids: list[str] = []
        self._customer_local: list[tuple[str, float] | None] = []
        """Per customer: (local currency, probability an order is in it), or None."""

    def product_info(self) -> dict[str, ProductInfo]:
        """What the answers report of each product, as it is now."""
        return {
            p["product_id"]: ProductInfo(p["product_name"], p["category"]) for p in self.products
        }

    def _emit(
        self,
        topic: int,
        event_type: str,
        event_ms: int,
        tail: str,
        *,
        orphan: bool = False,
        version: int = 1,
    ) -> None:
        """Send one valid event, produced a little after it happened; an orphan may follow.

        ``tail`` is the JSON after ``produced_at``'s value (:class:`EventEncoder`).
        """
        if event_ms >= self.horizon_ms:
            raise _PastHorizon
        produced_ms = event_ms + 3 + int(self._random() ** 3 * 2000)
        line = self._line(event_type, event_ms, produced_ms, tail, version)
        if self._deliver(topic, produced_ms, line, orphan=orphan):
            self._emit_orphan(event_ms)

    def _next_payment_id(self) -> str:
        self._payment_counter += 1
        return "pay_" + scramble(self._payment_counter, self._payment_salt)

    def _next_shipment_id(self) -> str:
        self._shipment_counter += 1
        return "shp_" + scramble(self._shipment_counter, self._shipment_salt)

    # --- reference data --------------------------------------------------------------------

    def make_products(self) -> None:
        """The first day's catalogue."""
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
                    _record(
                        "products",
                        product_id=product_id,
                        product_name=name,
                        category=category,
                        price=0.0,
                        active=rng.random() >= 0.04,
                    )
                )
                weight = cat_weight / _PRODUCTS_PER_CATEGORY * rng.lognormvariate(0.0, 0.8)
                self._product_weights.append(weight)

    def evolve_products(self) -> None:
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

    def refresh_catalogue(self) -> None:
        """Reference prices and the products on sale, after the day's changes."""
        active: list[str] = []
        weights: list[float] = []
        if not any(product["active"] for product in self.products):
            self.products[0]["active"] = True  # keep the shop open
        for product, weight in zip(self.products, self._product_weights, strict=True):
            # The reference price is money (2 decimals): the unit price rounded to cents.
            product["price"] = to_cents(self._price_units[product["product_id"]]) / 100
            if product["active"]:
                active.append(product["product_id"])
                weights.append(weight)
        self._active_ids = active
        self._active_cum = cumulative(weights)

    def _new_customer(self, created_ms: int) -> str:
        rng = self.rng
        number = len(self._customer_ids) + 1
        customer_id = f"cus_{number:07d}"
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        country = self._pick(_COUNTRIES, self._country_cum)
        record = _record(
            "customers",
            customer_id=customer_id,
            name=f"{first} {last}",
            email=f"{first}.{last}.{number}@example.com".lower(),
            country=country,
            created_at=self._encoder.timestamp(created_ms),
        )
        self.customers.append(orjson.dumps(record))
        self._customer_ids.append(customer_id)
        self._customer_local.append(_LOCAL_CURRENCY.get(country))
        return customer_id

    def make_customers(self) -> None:
        """The customers who signed up before the first day."""
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
        return self._customer_ids[index], REPORTING_CURRENCY

    def add_signups(self, day_ms: int) -> None:
        """Customers who sign up without ordering (yet); they appear in the day's snapshot."""
        count = self.rng.randrange(self.orders_per_day // 100 + 2)
        times = sorted(day_ms + self._between(0, MS_PER_DAY) for _ in range(count))
        for created_ms in times:
            self._new_customer(created_ms)

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
            order_id = "ord_" + scramble(_ORPHAN_ID_BASE + self._orphan_counter, self._order_salt)
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
            tail = self._encoder.payment_tail(
                self._sources[_PAYMENT_SOURCE],
                self._next_payment_id(),
                order_id,
                self._encoder.money[self._between(499, 25_000)],
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
            shipment_head = self._encoder.shipment_head(
                self._sources[_SHIPMENT_SOURCE],
                self._next_shipment_id(),
                order_id,
                rng.choice(self._carrier_names),
            )
            self._emit(
                _SHIPMENTS, event_type, event_ms, shipment_head + status + SHIPMENT_END, orphan=True
            )

    # --- order lifecycle -------------------------------------------------------------------

    def _pick_product(self) -> str:
        cum = self._active_cum
        return self._active_ids[bisect_right(cum, self._random() * cum[-1], 0, len(cum) - 1)]

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
        items: tuple[LineItem, ...] | None = None
        if with_items:
            items = tuple([(pid, qty, price) for pid, qty, price in order.basket])
        v2 = order.channel_discount if event_type == "order_created" else None
        tail = self._encoder.order_tail(
            order.source,
            life.order_id,
            order.customer_id,
            order.total_cents(),
            life.currency,
            status,
            items,
            v2,
        )
        if v2 is None:
            self._emit(_ORDERS, event_type, event_ms, tail)
        else:
            self._emit(_ORDERS, event_type, event_ms, tail, version=ORDER_CREATED_V2)
        if items is not None:
            life.baskets.append((event_ms, items))
        elif event_type == "order_canceled":
            life.cancels.append(event_ms)

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
        reason = None
        if event_type == "payment_failed":
            reason = _FAILURE_REASONS[int(self._random() * len(_FAILURE_REASONS))]
        tail = self._encoder.payment_tail(
            self._sources[_PAYMENT_SOURCE],
            payment_id,
            life.order_id,
            self._encoder.money[amount_cents],
            life.currency,
            method,
            status,
            reason,
        )
        self._emit(_PAYMENTS, event_type, event_ms, tail)
        if event_type == "payment_captured":
            life.captures.append((event_ms, amount_cents))
        elif event_type == "payment_refunded":
            life.refunds.append((event_ms, amount_cents))

    def place_order(self, created_ms: int, day_ms: int) -> None:
        """An order placed at ``created_ms`` on the day starting at ``day_ms``: its whole
        lifecycle up to the horizon, emitted, and recorded for the truth."""
        self._order_counter += 1
        order_id = "ord_" + scramble(self._order_counter, self._order_salt)
        customer_id, currency = self._customer_for(created_ms, day_ms)
        source = _ORDER_SOURCES[0] if self._random() < 0.62 else _ORDER_SOURCES[1]
        order = _Order(
            life=OrderLifecycle(order_id, created_ms, currency),
            customer_id=customer_id,
            source=self._sources[source],
            basket=self._new_basket(),
        )
        if self._random() < _V2_SHARE:
            channel = self._pick(CHANNELS, self._channel_cum)
            discount = 0
            if self._random() < _DISCOUNT_SHARE:
                percent = _DISCOUNT_PERCENTS[int(self._random() * len(_DISCOUNT_PERCENTS))]
                exact = sum(quantity * price for _, quantity, price in order.basket)
                discount = exact * percent // (100 * CENTS_PER_UNIT_PRICE)  # whole cents, <= Σ
            order.channel_discount = (channel, discount)
            order.life.channel = channel
            order.life.discount_cents = discount
        try:
            self._lifecycle(order)
        except _PastHorizon:
            self.in_flight += 1
        self.truth.add(order.life)
        if self.observe is not None:
            self.observe(order.life)

    def _lifecycle(self, order: _Order) -> None:
        """Decide and emit one order's events in time order, until the horizon stops it."""
        random_ = self._random
        between = self._between
        t = order.life.created_ms
        self._order_event(order, "order_created", t, "created", with_items=True)

        draw = random_()
        n_updates = 2 if draw < 0.02 else 1 if draw < 0.10 else 0
        if order.channel_discount is not None and order.channel_discount[1]:
            n_updates = 0  # a discounted basket stays as it was (see the module docstring)
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
        head = self._encoder.shipment_head(
            self._sources[_SHIPMENT_SOURCE], self._next_shipment_id(), order.life.order_id, carrier
        )
        t += between(MS_PER_HOUR, 30 * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_created", t, head + _CREATED)
        t += between(2 * MS_PER_HOUR, 40 * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_dispatched", t, head + _IN_TRANSIT)
        order.life.dispatches.append(t)
        if random_() < 0.04:  # delivery attempt failed
            t += between(12 * MS_PER_HOUR, 3 * MS_PER_DAY)
            self._emit(_SHIPMENTS, "shipment_failed", t, head + _FAILED)
            if random_() < 0.15:  # lost for good: refund the customer
                t += between(MS_PER_HOUR, 2 * MS_PER_DAY)
                self._payment_event(
                    order, "payment_refunded", t, payment_id, total, method, "refunded"
                )
                return
            t += between(6 * MS_PER_HOUR, 2 * MS_PER_DAY)
            self._emit(_SHIPMENTS, "shipment_dispatched", t, head + _IN_TRANSIT)
            order.life.dispatches.append(t)
        t += between(transit_low * MS_PER_HOUR, transit_high * MS_PER_HOUR)
        self._emit(_SHIPMENTS, "shipment_delivered", t, head + _DELIVERED)
        order.life.deliveries.append(t)

        if random_() < 0.06:  # returned after delivery: full or partial refund
            t += between(MS_PER_DAY, 14 * MS_PER_DAY)
            amount = total
            if len(order.basket) > 1 and random_() < 0.4:  # one line: its exact value, in cents
                _, quantity, price = order.basket[int(random_() * len(order.basket))]
                amount = min(to_cents(quantity * price), total)  # at most what was paid
            self._payment_event(
                order, "payment_refunded", t, payment_id, amount, method, "refunded"
            )

    # --- the day ---------------------------------------------------------------------------

    def order_times(self, day_ms: int, weekday: int) -> list[int]:
        """When the day's orders are placed, in time order (``weekday`` 0 is Monday)."""
        rng = self.rng
        factor = _WEEKDAY_FACTORS[weekday] * (0.9 + 0.2 * rng.random())
        count = round(self.orders_per_day * factor)
        hour_cum = self._hour_cum_weekend if weekday >= 5 else self._hour_cum_weekday
        hours = rng.choices(range(24), cum_weights=hour_cum, k=count)
        return sorted(
            day_ms + hour * MS_PER_HOUR + int(rng.random() * MS_PER_HOUR) for hour in hours
        )
