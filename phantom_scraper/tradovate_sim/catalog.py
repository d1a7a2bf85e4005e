"""Products, maturities and contracts (immutable), generated relative to a given day.

Contract names are root + CME month code + ONE-digit year (``NQZ6``).  For every product the
catalog holds the most recently expired maturity and several upcoming ones; the first
unexpired maturity is the front.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .products import PRODUCTS, ProductSpec

__all__ = ["Catalog", "Contract", "PRODUCTS", "ProductSpec", "round_to_tick", "MONTH_CODES"]

MONTH_CODES = "FGHJKMNQUVXZ"  # Jan .. Dec


@dataclass(frozen=True)
class Contract:
    id: int
    name: str
    product: ProductSpec
    maturity_id: int
    year: int
    month: int
    expiration: dt.date
    index: int  # 0 = front, -1 = expired, 1.. = later maturities
    initial_price: float

    @property
    def expired(self) -> bool:
        return self.index < 0

    def entity(self) -> dict:
        return {"id": self.id, "name": self.name, "contractMaturityId": self.maturity_id,
                "status": "DefinitionChecked", "providerTickSize": self.product.tick_size}

    def maturity_entity(self, product_id: int) -> dict:
        return {"id": self.maturity_id, "productId": product_id,
                "expirationMonth": self.year * 100 + self.month,
                "expirationDate": f"{self.expiration.isoformat()}T21:00:00Z",
                "firstIntentDate": None, "underlyingId": None, "isFront": self.index == 0,
                "archived": False}


def round_to_tick(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 6)


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (calendar.FRIDAY - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def _business_days_back(day: dt.date, count: int) -> dt.date:
    while count > 0:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def _last_business_day(year: int, month: int) -> dt.date:
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def _expiration(product: ProductSpec, year: int, month: int) -> dt.date:
    """Last trading day, by the product's (simplified) rule."""
    rule = product.expiry or ("third_friday" if product.months == "HMUZ" else "energy")
    prev_year, prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
    if rule == "third_friday":
        return _third_friday(year, month)
    if rule == "fx":  # two business days before the third Wednesday
        return _business_days_back(_third_friday(year, month) - dt.timedelta(days=2), 2)
    if rule == "rates":  # seventh business day before the last business day of the month
        return _business_days_back(_last_business_day(year, month), 7)
    if rule == "last_friday":
        day = dt.date(year, month, calendar.monthrange(year, month)[1])
        return day - dt.timedelta(days=(day.weekday() - calendar.FRIDAY) % 7)
    if rule == "grains":  # the business day before the 15th
        return _business_days_back(dt.date(year, month, 15), 1)
    if rule == "metals":  # about the 26th of the month before (simplified)
        return dt.date(prev_year, prev_month, 26)
    return dt.date(prev_year, prev_month, 20)  # energy: about the 20th of the month before (simplified)


class Catalog:
    """All products and contracts; lookups by name (case-insensitive) and id."""

    def __init__(self, today: dt.date):
        self.today = today
        self.products: Dict[str, Tuple[int, ProductSpec]] = {}
        self.contracts: Dict[int, Contract] = {}
        self.by_name: Dict[str, Contract] = {}
        self.by_root: Dict[str, List[Contract]] = {}  # expiration order, expired first
        self.delisted: set = set()  # names made untradable at run time (control: delist)
        for p_index, product in enumerate(PRODUCTS):
            product_id = 1000 + p_index
            self.products[product.name] = (product_id, product)
            self.by_root[product.name] = self._maturities(product, p_index)
            for contract in self.by_root[product.name]:
                self.contracts[contract.id] = contract
                self.by_name[contract.name] = contract

    def _maturities(self, product: ProductSpec, p_index: int) -> List[Contract]:
        year, month = self.today.year - 1, self.today.month
        candidates = []
        while len([c for c in candidates if c[2] >= self.today]) < product.upcoming:
            if MONTH_CODES[month - 1] in product.months:
                candidates.append((year, month, _expiration(product, year, month)))
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        expired = [c for c in candidates if c[2] < self.today][-1:]
        upcoming = [c for c in candidates if c[2] >= self.today]
        out = []
        for index, (y, m, exp) in enumerate(expired + upcoming, start=-len(expired)):
            seq = len(out)
            name = f"{product.name}{MONTH_CODES[m - 1]}{y % 10}"
            price = round_to_tick(product.base_price + max(index, 0) * 40 * product.tick_size,
                                  product.tick_size)
            out.append(Contract(id=3_000_000 + p_index * 100 + seq, name=name, product=product,
                                maturity_id=20_000 + p_index * 100 + seq, year=y, month=m,
                                expiration=exp, index=index, initial_price=price))
        return out

    def find(self, name: str) -> Optional[Contract]:
        return self.by_name.get((name or "").strip().upper())

    def front(self, root: str) -> Optional[Contract]:
        live = [c for c in self.by_root.get((root or "").strip().upper(), []) if not c.expired]
        return live[0] if live else None

    def suggest(self, text: str, limit: int) -> List[Contract]:
        """Best maturity first: an exact root gives its live maturities, else name-prefix matches."""
        text = (text or "").strip().upper()
        if text in self.by_root:
            found = [c for c in self.by_root[text] if not c.expired]
        else:
            found = sorted((c for c in self.contracts.values()
                            if c.name.startswith(text) and not c.expired),
                           key=lambda c: (c.product.name, c.index))
        return found[:max(limit, 0)]

    def roll(self, name: str, forward: bool, if_expired: bool) -> Optional[Contract]:
        """``contract/rollcontract``: a root gives the front; otherwise the next (previous) maturity.

        With ``ifExpired`` a contract that has not expired is returned unchanged.
        """
        key = (name or "").strip().upper()
        if key in self.by_root:
            return self.front(key)
        contract = self.by_name.get(key)
        if contract is None:
            return None
        if if_expired and not contract.expired:
            return contract
        series = self.by_root[contract.product.name]
        pos = series.index(contract)
        if forward:
            later = [c for c in series[pos + 1:] if not c.expired]
            return later[0] if later else None
        return series[pos - 1] if pos > 0 else None

    def product_entity(self, root: str) -> Optional[dict]:
        entry = self.products.get((root or "").strip().upper())
        if entry is None:
            return None
        product_id, p = entry
        return {"id": product_id, "name": p.name, "currencyId": 1, "productType": "Futures",
                "description": p.description, "exchangeId": p.exchange_id, "exchangeChannelId": p.exchange_id,
                "contractGroupId": 1, "riskDiscountContractGroupId": 1, "status": "Verified",
                "months": p.months, "isSecured": False, "valuePerPoint": p.value_per_point,
                "priceFormatType": p.price_format_type, "priceFormat": p.price_format, "tickSize": p.tick_size,
                "allowProviderContractInfo": False, "isMicro": p.is_micro}

    def resolve(self, symbol: str) -> Optional[Contract]:
        """A contract name, or a continuous symbol ``@ROOT`` (the root's front month; market data only)."""
        text = (symbol or "").strip().upper()
        if text.startswith("@"):
            return self.front(text[1:])
        return self.find(text)
