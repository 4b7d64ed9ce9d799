"""The distribution families of the parametric tables and per-element models."""

from __future__ import annotations

import enum
from typing import Union


class Family(enum.IntEnum):
    """A zero-mean location-scale family, by its standardized upper tail ``sf``
    (src/cpp/tables/detmath.h).  The values are the native core's codes.

    Every function that takes a family takes a ``Family`` or its name:

    >>> import featcodec as fc
    >>> fc.Family.of("laplace") is fc.Family.LAPLACE
    True
    >>> fc.element_cdf("laplace", 0.0, 1.0, 8)[1].tolist() == fc.element_cdf(fc.Family.LAPLACE, 0.0, 1.0, 8)[1].tolist()
    True
    """

    GAUSSIAN = 0  # standard deviation s
    LAPLACE = 1  # density exp(-|x| / s) / 2s
    LOGISTIC = 2  # CDF 1 / (1 + exp(-x / s))

    @classmethod
    def of(cls, family: "Union[Family, str]") -> "Family":
        """``family`` as a Family; a ValueError naming the choices otherwise."""
        if isinstance(family, Family):
            return family
        if isinstance(family, str):
            found = cls.__members__.get(family.upper())
            if found is not None and family == family.lower():
                return found
        names = [f.name.lower() for f in cls]
        raise ValueError(f"family must be a featcodec.Family or one of {names}, got {family!r}")
