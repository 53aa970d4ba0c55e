"""Adversarial evaluation: FGSM, PGD, APGD and Square over epsilon grids (Jung et al., ICLR 2023 protocol).

Public API (docs/architecture.md):

- :func:`list_attacks` / :func:`get_attack` / :func:`register_attack`: the registry, keyed by the Jung'23 names
  (``fgsm@Linf``, ``pgd@Linf``, ``aa_apgd-ce@Linf``, ``aa_square@Linf``) plus ``aa_apgd-dlr``, ``aa_apgd-t``, the
  L2 variants (``aa_square@L2`` included) and ``autoattack@Linf`` (alias ``autoattack``) / ``autoattack@L2``.
- :func:`get_attack_grid` / :func:`list_attack_grids` / :func:`register_attack_grid`: named epsilon grids in [0, 1]
  pixel units (``jung2023``, ``tiny``, ``robbench2024``) with :func:`attack_grid_params`; a pipeline protocol
  (:func:`robustbench_nas.pipelines.get_protocol`) takes its grid from here.
- :func:`evaluate`: one attack over a grid -> one :class:`AttackResult` per epsilon;
  :func:`evaluate_protocol`: every attack of a named protocol with its parameters.
- :func:`robustbench_nas.attacks.training.adversarial_batch`: PGD examples for adversarial training.

Defaults and deliberate differences from the references (details in each module's docstring):

- budgets: PGD 40 steps with step ``2.5 * eps / steps`` (Madry et al.; the reference dataset's step size is not
  published), APGD 100 iterations and 1 restart (AutoAttack standard; AutoAttack's "custom" version would use 5),
  Square 5000 queries with ``p_init=0.8`` and AutoAttack's un-rescaled schedule;
- FGSM/PGD follow torchattacks' update rules and its mean reduction (per epsilon): given the same start, the
  iterates are bitwise equal to torchattacks' when one call attacks torchattacks' batch (tested on a full-size NB201
  network, C=16, N=5, 200 CIFAR-10 images, PGD-10 at 1/255); APGD and Square follow AutoAttack's bitwise given the
  same draws (tested: the kernels take a shared ``torch.Generator`` seeded as the reference seeds its global RNG);
- random numbers (issue 29): ``evaluate`` gives every row (image x radius) its own counter-based CPU stream keyed
  by seed, attack, mode, radius and image id (:mod:`robustbench_nas.utils.streams`), moved to the device, and
  weights FGSM/PGD losses 1/N (N images, torchattacks' mean over the whole set). Results therefore do not depend on
  the device's random number generators, on ``batch_size`` or on the order of the images (tested bit for bit at
  batch sizes 7, 64, 300 and permuted, with a network forwarded image by image: the CPU's convolutions round a
  logit differently by up to ~7e-7 at other batch sizes, which the attack cannot remove). Square draws its squares
  per row (the reference shares one per query across the batch). Random starts differ from torchattacks' and
  AutoAttack's own draws, so accuracies agree within the attack's randomness;
- modes: ``"independent"`` (default, the reference protocols') attacks every epsilon from scratch;
  ``"early_exit"`` reports the worst case over all eps' <= eps (stronger, cheaper; FGSM at 255/255 gave 0.004
  against 0.095 independent on 1,000 real images), so it is not the reference's number;
- APGD and Square attack only images correctly classified on the clean input, as AutoAttack does; FGSM and PGD
  attack every image, as torchattacks does (in ``"independent"`` mode);
- robust images report the statistics of the attack's best (highest-loss) point, not of the clean image;
- ``autoattack@Linf`` / ``autoattack@L2`` run FAB-T through torchattacks' ``FAB``.

Example:
    >>> from robustbench_nas import attacks
    >>> grid = attacks.get_attack_grid("jung2023")["pgd@Linf"]
    >>> results = attacks.evaluate(model.eval(), x, y, "pgd@Linf", grid, mode="early_exit")
"""

from __future__ import annotations

from . import apgd as _apgd  # noqa: F401  (registers the APGD attacks)
from . import autoattack as _autoattack  # noqa: F401  (registers autoattack)
from . import gradient as _gradient  # noqa: F401  (registers FGSM and PGD)
from . import square as _square  # noqa: F401  (registers Square)
from . import training
from .evaluate import MODES, AttackResult, evaluate, evaluate_protocol
from .params import APGDParams, AttackParams, AutoAttackParams, FGSMParams, PGDParams, SquareParams
from .protocols import (
    AttackGrid,
    attack_grid_params,
    get_attack_grid,
    list_attack_grids,
    parse_eps,
    register_attack_grid,
)
from .registry import AttackSpec, get_attack, list_aliases, list_attacks, register_attack

__all__ = [
    "MODES",
    "APGDParams",
    "AttackParams",
    "AttackResult",
    "AttackGrid",
    "AttackSpec",
    "AutoAttackParams",
    "FGSMParams",
    "PGDParams",
    "SquareParams",
    "evaluate",
    "evaluate_protocol",
    "attack_grid_params",
    "get_attack",
    "get_attack_grid",
    "list_aliases",
    "list_attack_grids",
    "list_attacks",
    "parse_eps",
    "register_attack",
    "register_attack_grid",
    "training",
]
