"""Metropolis-adjusted Langevin: the Langevin proposal made exact by a Metropolis-Hastings accept."""

from __future__ import annotations

from .base import Sampler
from .langevin import LangevinProposer
from .metropolis import MetropolisHastings

__all__ = ["MALA"]


class MALA(Sampler):
    r"""Metropolis-adjusted Langevin algorithm, batched over chains.

    Proposal ``z' = z - (eps/2) grad E(z) + sqrt(eps) xi`` with density
    ``q(z'|z) = N(z'; z - (eps/2) grad E(z), eps I)``, accepted with probability

    .. math::  \alpha = \min\Bigl(1, \frac{e^{-E(z')}\, q(z\mid z')}{e^{-E(z)}\, q(z'\mid z)}\Bigr)

    computed in log space.  The chain leaves ``exp(-E)`` exactly invariant for any eps.  A proposal
    with a non-finite energy or gradient is rejected and counted as a divergence, as is (rejected by
    the test itself) one whose log ratio is below -1000, Stan's energy-error threshold.  Energy and
    gradient of the current state are cached: one step costs one forward and one backward pass.
    The kernel is ``MetropolisHastings(LangevinProposer())``.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: step size (noise variance; ``eps = 2 * step_size`` of BlackJAX, ``= h`` of TFP); a
            scalar is shared by all chains, a ``(chains,)`` tensor is per chain (:data:`~.options.EPS`).
        compile: :data:`~.options.COMPILE`.
    """

    def make_kernel(self) -> MetropolisHastings:
        return MetropolisHastings(LangevinProposer())
