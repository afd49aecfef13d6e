"""The penalty parameters lam0, lam2 and M, validated once (DESIGN.md section 1).

lam0 >= 0 weighs the indicator (the count of kept structures), lam2 >= 0 the squared l2 norm
of a kept structure, M > 0 bounds |w| entrywise (a scalar, or one value per structure in the
instance's order). The paper writes lam2 = lam * alpha and lam0 = lam * (1 - alpha) with
alpha in (0, 1); SPRParams.paper builds the same object from that spelling. Every part of
sprkit (the closed form, the relaxations, the SPR route, the exact solvers, the network
penalties) takes its parameters through this module, so the domains are checked here only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprkit.errors import ParameterError

# Larger values overflow float64 in the products the models form (lam2 * M^2, M^2 * Gram).
LARGEST = 1e100


def _not_a_number(value: object) -> bool:
    """Values float() would convert but that are not numbers: strings, bools, None."""
    return value is None or isinstance(value, (str, bytes, bool, np.bool_))


def _checked_scalar(name: str, value: object, *, positive: bool = False) -> float:
    """`value` as a float in [0, LARGEST] (or (0, LARGEST] when `positive`)."""
    try:
        if _not_a_number(value):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    low = "> 0" if positive else ">= 0"
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        raise ParameterError(f"{name} must be finite and {low}, got {number:g}")
    if number > LARGEST:
        raise ParameterError(
            f"{name} = {number:g} is beyond {LARGEST:g}, where float64 overflows in the "
            "model's products"
        )
    return number


def checked_M(M: object) -> float | np.ndarray:
    """M as a float or a read-only 1-D float64 array, each value finite, > 0 and <= LARGEST
    (numbers only: a string, a bool or None is a ParameterError, not converted)."""
    try:
        raw = np.asarray(M)
        objects = raw.dtype.kind == "O" and any(map(_not_a_number, raw.flat))
        if _not_a_number(M) or raw.dtype.kind in "bSUV" or objects:
            raise TypeError
        values = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"M must be a number or an array of numbers, got {M!r}") from None
    if values.ndim == 0:
        return _checked_scalar("M", values, positive=True)
    if values.ndim != 1 or values.size == 0:
        raise ParameterError(f"M must be a scalar or 1-D (one per structure), got {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ParameterError("M must be finite and > 0 for every structure")
    if np.any(values > LARGEST):
        raise ParameterError(f"M has values beyond {LARGEST:g}, where float64 overflows")
    values = values.copy()
    values.flags.writeable = False
    return values


def check_alpha(alpha: object) -> float:
    """The paper's alpha, checked to lie in the open interval (0, 1)."""
    alpha = _checked_scalar("alpha", alpha)
    if not 0.0 < alpha < 1.0:
        raise ParameterError(f"alpha must lie in the open interval (0, 1), got {alpha:g}")
    return alpha


def check_lam(lam: object, name: str = "lam") -> float:
    """A penalty weight, checked to be finite, >= 0 and <= LARGEST."""
    return _checked_scalar(name, lam)


@dataclass(frozen=True, eq=False)
class SPRParams:
    """lam0, lam2 (floats >= 0) and M (a float > 0, one per structure, or None where the
    caller derives it, as the network penalties do from the starting weights)."""

    lam0: float
    lam2: float
    M: float | np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam0", _checked_scalar("lam0", self.lam0))
        object.__setattr__(self, "lam2", _checked_scalar("lam2", self.lam2))
        if self.M is not None:
            object.__setattr__(self, "M", checked_M(self.M))

    @classmethod
    def paper(cls, lam: float, alpha: float, M: object = None) -> SPRParams:
        """From the paper's lam >= 0 and alpha in (0, 1): lam2 = lam alpha,
        lam0 = lam (1 - alpha)."""
        lam, alpha = check_lam(lam), check_alpha(alpha)
        return cls(lam0=lam * (1.0 - alpha), lam2=lam * alpha, M=M)

    @classmethod
    def resolve(
        cls,
        lam0: float | None = None,
        lam2: float | None = None,
        *,
        lam: float | None = None,
        alpha: float | None = None,
        M: object = None,
    ) -> SPRParams:
        """From exactly one of the spellings (lam0, lam2) or the paper's (lam, alpha)."""
        direct = lam0 is not None or lam2 is not None
        if direct and (lam is not None or alpha is not None):
            raise ParameterError("give either lam0 and lam2 or lam and alpha, not both")
        if direct:
            if lam0 is None or lam2 is None:
                raise ParameterError("give both lam0 and lam2 (or lam and alpha)")
            return cls(lam0=lam0, lam2=lam2, M=M)
        if lam is None or alpha is None:
            raise ParameterError("give lam0 and lam2, or the paper's lam and alpha")
        return cls.paper(lam, alpha, M)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SPRParams):
            return NotImplemented
        return (self.lam0, self.lam2, self._M_key()) == (other.lam0, other.lam2, other._M_key())

    def __hash__(self) -> int:
        return hash((self.lam0, self.lam2, self._M_key()))

    def _M_key(self) -> tuple | float | None:
        return tuple(self.M.tolist()) if isinstance(self.M, np.ndarray) else self.M

    @property
    def lam(self) -> float:
        """The paper's lam = lam0 + lam2."""
        return self.lam0 + self.lam2

    @property
    def alpha(self) -> float:
        """The paper's alpha = lam2 / (lam0 + lam2) (nan when both are 0)."""
        return self.lam2 / self.lam if self.lam > 0 else float("nan")


def structure_bounds(M: object, n_structures: int) -> np.ndarray:
    """M as one checked value per structure (a scalar repeated); a new writable array."""
    values = checked_M(M)
    if np.ndim(values) == 0:
        return np.full(n_structures, float(values))
    if values.shape != (n_structures,):
        raise ParameterError(
            f"M must be a scalar or have one value per structure ({n_structures}), "
            f"got shape {values.shape}"
        )
    return np.array(values)
