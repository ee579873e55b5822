"""timedb.units: conversions by pint, y = x * scale + offset; 422s naming the units."""

import pytest

from timedb.errors import Unprocessable
from timedb.units import IDENTITY, conversion


@pytest.mark.parametrize(
    ("source", "target", "x", "y"),
    [
        ("kW", "MW", 1500.0, 1.5),
        ("MW", "kW", 1.5, 1500.0),
        ("degC", "K", 20.0, 293.15),
        ("K", "degC", 293.15, 20.0),
        ("degF", "degC", 212.0, 100.0),
        ("MWh", "kWh", 2.0, 2000.0),
        ("percent", "dimensionless", 50.0, 0.5),
        ("m/s", "km/h", 10.0, 36.0),
    ],
)
def test_conversions(source, target, x, y):
    assert conversion(source, target)(x) == pytest.approx(y)


def test_same_unit_needs_no_pint_even_when_pint_does_not_know_it():
    assert conversion("EUR/MWh", "EUR/MWh") is IDENTITY
    assert conversion("EUR/MWh", "EUR/MWh")(3.5) == 3.5
    assert IDENTITY(None) is None


@pytest.mark.parametrize(
    ("source", "target", "named"),
    [
        ("kW", "degC", ("kW", "degC")),
        ("EUR/MWh", "MW", ("EUR/MWh",)),
        ("MW", "furlongs per bogon", ("furlongs per bogon",)),
        ("2*kW", "MW", ("2*kW",)),
    ],
)
def test_unknown_or_incompatible_units_are_422_naming_them(source, target, named):
    with pytest.raises(Unprocessable) as err:
        conversion(source, target)
    for unit in named:
        assert repr(unit) in err.value.detail, err.value.detail
