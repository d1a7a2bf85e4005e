"""The product table: common CME Group futures with their tick sizes, point values and listing cycles.

Each row is what ``product/find`` / ``product/list`` report and what :mod:`.catalog` builds maturities
from.  Prices are plausible levels (not quotes); ``daily_vol`` is the relative daily volatility the
simulated price path (:mod:`.pricepath`) uses.  Expiration rules are simplified approximations of the
exchange's (named in ``expiry``, computed in :mod:`.catalog`).  Rows are only ever appended: product and
contract ids follow the row order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

ALL_MONTHS = "FGHJKMNQUVXZ"
QUARTERLY = "HMUZ"

# exchange ids (``exchangeId``): 1 CME, 2 CBOT, 3 NYMEX, 4 COMEX
CME, CBOT, NYMEX, COMEX = 1, 2, 3, 4


@dataclass(frozen=True)
class ProductSpec:
    name: str
    description: str
    tick_size: float
    value_per_point: float
    months: str
    base_price: float
    price_format: int
    exchange_id: int
    upcoming: int  # number of unexpired maturities generated
    daily_vol: float = 0.01  # relative one-day volatility of the simulated price path
    expiry: str = ""  # "" = third Friday (quarterly) / energy and metals rules by exchange
    is_micro: bool = False
    price_format_type: str = "Decimal"


def _q(name, desc, tick, vpp, base, fmt, exch, vol, expiry="third_friday", micro=False, months=QUARTERLY,
       upcoming=4, fmt_type="Decimal") -> ProductSpec:
    return ProductSpec(name, desc, tick, vpp, months, base, fmt, exch, upcoming, vol, expiry, micro, fmt_type)


PRODUCTS: Tuple[ProductSpec, ...] = (
    # the original rows (ids must not move)
    ProductSpec("ES", "E-Mini S&P 500", 0.25, 50.0, QUARTERLY, 6000.0, -2, CME, 4, 0.011, "third_friday"),
    ProductSpec("MES", "Micro E-Mini S&P 500", 0.25, 5.0, QUARTERLY, 6000.0, -2, CME, 4, 0.011, "third_friday", True),
    ProductSpec("NQ", "E-Mini NASDAQ 100", 0.25, 20.0, QUARTERLY, 21000.0, -2, CME, 4, 0.014, "third_friday"),
    ProductSpec("MNQ", "Micro E-Mini NASDAQ 100", 0.25, 2.0, QUARTERLY, 21000.0, -2, CME, 4, 0.014, "third_friday",
                True),
    ProductSpec("YM", "E-Mini Dow ($5)", 1.0, 5.0, QUARTERLY, 44000.0, 0, CBOT, 4, 0.010, "third_friday"),
    ProductSpec("MYM", "Micro E-Mini Dow", 1.0, 0.5, QUARTERLY, 44000.0, 0, CBOT, 4, 0.010, "third_friday", True),
    ProductSpec("RTY", "E-Mini Russell 2000", 0.1, 50.0, QUARTERLY, 2300.0, -1, CME, 4, 0.015, "third_friday"),
    ProductSpec("M2K", "Micro E-Mini Russell 2000", 0.1, 5.0, QUARTERLY, 2300.0, -1, CME, 4, 0.015, "third_friday",
                True),
    ProductSpec("CL", "Crude Oil", 0.01, 1000.0, ALL_MONTHS, 70.0, -2, NYMEX, 6, 0.022, "energy"),
    ProductSpec("GC", "Gold", 0.1, 100.0, "GJMQVZ", 2600.0, -1, COMEX, 4, 0.010, "metals"),
    # equity index
    _q("EMD", "E-Mini S&P MidCap 400", 0.1, 100.0, 3100.0, -1, CME, 0.013),
    _q("NKD", "Nikkei 225 (Dollar)", 5.0, 5.0, 39000.0, 0, CME, 0.013),
    # energy
    _q("MCL", "Micro WTI Crude Oil", 0.01, 100.0, 70.0, -2, NYMEX, 0.022, "energy", True, ALL_MONTHS, 6),
    _q("QM", "E-mini Crude Oil", 0.025, 500.0, 70.0, -3, NYMEX, 0.022, "energy", False, ALL_MONTHS, 6),
    _q("NG", "Natural Gas", 0.001, 10000.0, 3.0, -3, NYMEX, 0.035, "energy", False, ALL_MONTHS, 6),
    _q("MNG", "Micro Henry Hub Natural Gas", 0.001, 1000.0, 3.0, -3, NYMEX, 0.035, "energy", True, ALL_MONTHS, 6),
    _q("RB", "RBOB Gasoline", 0.0001, 42000.0, 2.1, -4, NYMEX, 0.022, "energy", False, ALL_MONTHS, 6),
    _q("HO", "NY Harbor ULSD", 0.0001, 42000.0, 2.3, -4, NYMEX, 0.020, "energy", False, ALL_MONTHS, 6),
    # metals
    _q("MGC", "Micro Gold", 0.1, 10.0, 2600.0, -1, COMEX, 0.010, "metals", True, "GJMQVZ"),
    _q("SI", "Silver", 0.005, 5000.0, 31.0, -3, COMEX, 0.018, "metals", False, "HKNUZ", 5),
    _q("SIL", "Micro Silver", 0.005, 1000.0, 31.0, -3, COMEX, 0.018, "metals", True, "HKNUZ", 5),
    _q("HG", "Copper", 0.0005, 25000.0, 4.2, -4, COMEX, 0.015, "metals", False, "HKNUZ", 5),
    _q("MHG", "Micro Copper", 0.0005, 2500.0, 4.2, -4, COMEX, 0.015, "metals", True, "HKNUZ", 5),
    _q("PL", "Platinum", 0.1, 50.0, 950.0, -1, NYMEX, 0.016, "metals", False, "FJNV"),
    # interest rates (prices in points; 1/32, 1/64, 1/128, 1/256 of a point)
    _q("ZB", "30 Year U.S. Treasury Bond", 0.03125, 1000.0, 118.0, -5, CBOT, 0.008, "rates", fmt_type="Fractional"),
    _q("UB", "Ultra U.S. Treasury Bond", 0.03125, 1000.0, 125.0, -5, CBOT, 0.010, "rates", fmt_type="Fractional"),
    _q("ZN", "10 Year U.S. Treasury Note", 0.015625, 1000.0, 110.0, -6, CBOT, 0.004, "rates",
       fmt_type="Fractional"),
    _q("ZF", "5 Year U.S. Treasury Note", 0.0078125, 1000.0, 107.0, -7, CBOT, 0.003, "rates",
       fmt_type="Fractional"),
    _q("ZT", "2 Year U.S. Treasury Note", 0.00390625, 2000.0, 103.0, -8, CBOT, 0.0015, "rates",
       fmt_type="Fractional"),
    # FX
    _q("6E", "Euro FX", 0.00005, 125000.0, 1.08, -5, CME, 0.005, "fx"),
    _q("M6E", "Micro EUR/USD", 0.0001, 12500.0, 1.08, -4, CME, 0.005, "fx", True),
    _q("6J", "Japanese Yen", 0.0000005, 12500000.0, 0.0067, -7, CME, 0.006, "fx"),
    _q("6B", "British Pound", 0.0001, 62500.0, 1.27, -4, CME, 0.005, "fx"),
    _q("6A", "Australian Dollar", 0.00005, 100000.0, 0.65, -5, CME, 0.006, "fx"),
    _q("6C", "Canadian Dollar", 0.00005, 100000.0, 0.73, -5, CME, 0.004, "fx"),
    _q("6S", "Swiss Franc", 0.00005, 125000.0, 1.13, -5, CME, 0.005, "fx"),
    # crypto (monthly, last Friday of the contract month)
    _q("BTC", "Bitcoin", 5.0, 5.0, 95000.0, 0, CME, 0.030, "last_friday", False, ALL_MONTHS, 6),
    _q("MBT", "Micro Bitcoin", 5.0, 0.1, 95000.0, 0, CME, 0.030, "last_friday", True, ALL_MONTHS, 6),
    _q("ETH", "Ether", 0.5, 50.0, 3500.0, -1, CME, 0.040, "last_friday", False, ALL_MONTHS, 6),
    _q("MET", "Micro Ether", 0.5, 0.1, 3500.0, -1, CME, 0.040, "last_friday", True, ALL_MONTHS, 6),
    # agriculture (cents per bushel)
    _q("ZC", "Corn", 0.25, 50.0, 450.0, -2, CBOT, 0.015, "grains", False, "HKNUZ", 5),
    _q("ZS", "Soybeans", 0.25, 50.0, 1000.0, -2, CBOT, 0.013, "grains", False, "FHKNQUX", 6),
    _q("ZW", "Chicago SRW Wheat", 0.25, 50.0, 550.0, -2, CBOT, 0.018, "grains", False, "HKNUZ", 5),
)
