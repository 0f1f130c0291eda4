"""Training loop for the energy-GAN: critic steps, generator step, progress, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..process_group import active, rank_and_world
from ..progress import progress_bar
from .build import build_networks
from .data import DATASETS, Dataset, TrainRecipe, check_data, load_dataset, shape_recipe
from .entropy import entropy_term
from .networks import ARCHITECTURES, CRITIC_NORMS, conv_fits
from .objectives import critic_loss, generator_loss

__all__ = ["TrainConfig", "Trainer", "train"]

@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints; JSON-like values only).

    ``None`` fields take the data set's recipe (:class:`~latentmcmc.training.data.TrainRecipe` in
    :data:`~latentmcmc.training.data.DATASETS`: entropy term, width, learning rate, batch size, critic
    steps, gradient-penalty weight) and its latent size (2 for 2-D sets, 32 digits, 64 stacked digits).

    ``data`` is a built-in name or a file or folder (:func:`~latentmcmc.datafiles.read_data`), read as
    ``data_view`` when given (flat files), ``holdout`` of it kept out of training and measured against
    in the features of ``features`` (an exported extractor); such data takes the recipe of
    :data:`~latentmcmc.training.data.SHAPE_RECIPES` its shape fits (``arch``: ``conv`` for square
    images, ``mlp`` otherwise), and ``data_fingerprint`` records its content (a resumed run checks it).
    ``critic_norm`` (:data:`~latentmcmc.training.networks.CRITIC_NORMS`) normalises a conv critic's weights.
    """

    data: str = "gaussians25"
    entropy: str | None = None
    latent_dim: int | None = None
    width: int | None = None
    depth: int = 3
    gp_weight: float | None = None
    encoder_weight: float = 1.0
    lr: float | None = None
    betas: tuple[float, float] = (0.5, 0.9)
    critic_steps: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    data_shape: tuple[int, ...] = field(default=(), repr=False)
    arch: str | None = None
    data_view: tuple[int, ...] | None = None
    holdout: float = 0.1
    features: str | None = None
    data_fingerprint: str | None = None
    critic_norm: str = "none"

    RECIPE_FIELDS = ("entropy", "width", "lr", "batch_size", "critic_steps", "gp_weight")

    def resolved(self, dataset: Dataset) -> "TrainConfig":
        """Every ``None`` field filled in from the data set's recipe and shape."""
        image = len(dataset.shape) > 1
        if self.data in DATASETS:
            recipe, arch = DATASETS[self.data].recipe, self.arch or "mlp"
            latent = self.latent_dim if self.latent_dim is not None else (
                2 if not image else (64 if dataset.name == "stacked-digits" else 32))
        else:
            if self.data_shape and tuple(self.data_shape) != tuple(dataset.shape):
                raise ValueError(f"data_shape {tuple(self.data_shape)} is not the shape of the samples in {self.data} "
                                 f"{tuple(dataset.shape)}: data_shape is filled in from the data; to view flat samples "
                                 "as images give data_view=(C, H, W)")
            _, entry = shape_recipe(dataset.shape)
            recipe, arch = entry.recipe, self.arch or entry.arch
            latent = self.latent_dim if self.latent_dim is not None else (2 if dataset.shape == (2,) else entry.latent_dim)
        if self.critic_norm != "none" and arch != "conv":
            raise ValueError(f"the {self.critic_norm} critic normalisation (--critic-norm) applies to the conv "
                             f"architecture, not {arch}")
        if arch == "conv" and not conv_fits(dataset.shape):
            raise ValueError(f"the conv architecture (--arch conv) takes square images of 1 or 3 channels with an even "
                             f"side from 8 to 64; the data's shape is "
                             f"{tuple(dataset.shape)}")
        filled = {name: getattr(recipe, name) for name in self.RECIPE_FIELDS if getattr(self, name) is None}
        return dataclasses.replace(self, latent_dim=latent, data_shape=tuple(dataset.shape), betas=tuple(self.betas),
                                   arch=arch, data_fingerprint=dataset.fingerprint, **filled)

    def validate(self) -> None:
        check_data(self.data)
        if self.critic_norm not in CRITIC_NORMS:
            raise ValueError(f"unknown critic normalisation {self.critic_norm!r}; choose one of {', '.join(CRITIC_NORMS)}")
        if self.arch is not None and self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if not 0.0 <= float(self.holdout) < 0.5:
            raise ValueError(f"holdout must be in [0, 0.5), got {self.holdout}")
        if self.features is not None and not Path(self.features).exists():
            raise ValueError(f"features {self.features!r}: no such file")
        if self.entropy is not None:
            entropy_term(self.entropy)  # raises on an unknown name
        for name in ("width", "depth", "critic_steps", "batch_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latent_dim is not None and int(self.latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for but CUDA is not available")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"], d["data_shape"] = list(self.betas), list(self.data_shape)
        d["data_view"] = None if self.data_view is None else list(self.data_view)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["betas"] = tuple(d.get("betas", (0.5, 0.9)))
        d["data_shape"] = tuple(d.get("data_shape", ()))
        if d.get("data_view") is not None:
            d["data_view"] = tuple(d["data_view"])
        return cls(**d)


class Trainer:
    r"""Learns ``U`` and ``G`` (and ``T`` or ``Enc``) with the energy-GAN objective.

    Per generator step, ``critic_steps`` times: ``min_U E_data[U(x)] - E_z[U(G(z))] + lambda
    E_data|grad_x U(x)|^2``; then ``min_{G,T} E_z[U(G(z))] + BCE_T`` (``entropy="dim"``), or ``min_{G,Enc}
    E_z[U(G(z))] + lambda2 |z - Enc(G(z))|^2`` (``"encoder"``), or ``min_G E_z[U(G(z))]`` (``"none"``).
    Adam(lr, betas) for every network.  All randomness (batches, latents, shuffles) comes from one CPU
    generator whose state is checkpointed, so a resumed run continues exactly.

    Inside a ``torch.distributed`` process group of ``W > 1`` processes (torchrun; ``distributed=None``
    detects it) every trained network is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
    and ``batch_size`` stays the global batch: every rank draws the same global batch from the same
    seeded generator and trains on its ``1/W`` slice, and DDP averages the gradients, so the losses
    are the single-process ones (the Deep-InfoMax shuffle pairs latents within a rank's slice).  Rank
    0 writes the checkpoints; a checkpoint resumes with any number of processes.
    """

    def __init__(self, config: TrainConfig | dict | None = None, dataset: Dataset | None = None,
                 distributed: bool | None = None) -> None:
        config = TrainConfig.from_dict(config) if isinstance(config, dict) else (config or TrainConfig())
        config.validate()
        self.dataset = dataset or load_dataset(config.data, config.data_view, config.holdout, config.seed,
                                               config.features)
        if config.data_fingerprint and self.dataset.fingerprint and config.data_fingerprint != self.dataset.fingerprint:
            raise ValueError(f"the data in {config.data} is not what this run trained on (its fingerprint "
                             f"{self.dataset.fingerprint} is not the recorded {config.data_fingerprint}): restore "
                             "the data, or train a new run")
        self.config = config.resolved(self.dataset)
        if self.dataset.x.shape[0] < self.config.batch_size:
            raise ValueError(f"{config.data} has {self.dataset.x.shape[0]} samples to train on, fewer than a batch of "
                             f"{self.config.batch_size}: lower the batch size (or the holdout)")
        self.device = torch.device(self.config.device)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
            torch.manual_seed(self.config.seed)
            nets = build_networks(self.config.to_dict())
        self.nets = {k: v.to(self.device) for k, v in nets.items()}
        c = self.config
        self.opt = {k: torch.optim.Adam(v.parameters(), lr=c.lr, betas=c.betas) for k, v in self.nets.items()}
        self.rank, self.world = _process_group(distributed)
        if c.batch_size % self.world:
            raise ValueError(f"batch_size={c.batch_size} must be divisible by the {self.world} processes")
        self._local = slice(self.rank * c.batch_size // self.world, (self.rank + 1) * c.batch_size // self.world)
        self.trained = self.nets if self.world == 1 else {k: _ddp(v, self.device) for k, v in self.nets.items()}
        self.rng = torch.Generator().manual_seed(c.seed)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.quality_history: list[dict] = []  # the data set's quality of prior samples along training

    @property
    def recipe(self) -> TrainRecipe:
        """The data set's training recipe (what ``None`` settings and ``train(steps=None)`` take): a built-in set's,
        or the one :data:`~latentmcmc.training.data.SHAPE_RECIPES` gives a file's shape."""
        if self.config.data in DATASETS:
            return DATASETS[self.config.data].recipe
        return shape_recipe(self.dataset.shape)[1].recipe

    @torch.no_grad()
    def measure(self) -> dict | None:
        """The data set's quality metrics of ``G(z)`` on a fixed set of prior draws (2,000 for 2-D data,
        1,000 images), recorded in :attr:`quality_history`; None when the data set has no metric.

        The draws come from their own seed, so measuring never changes the training's random numbers.
        """
        if self.dataset.metric is None and self.dataset.measure is None:
            return None
        n = 2000 if len(self.dataset.shape) == 1 else 1000
        z = torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(20261129)).to(self.device)
        was_training = self.generator.training
        self.generator.eval()
        try:
            quality = self.dataset.quality(self.generator(z))
        finally:
            self.generator.train(was_training)
        row = {"step": self.step, **{k: v for k, v in (quality or {}).items() if not isinstance(v, (list, dict))}}
        if not self.quality_history or self.quality_history[-1]["step"] != self.step:
            self.quality_history.append(row)
        return row

    @property
    def generator(self):
        return self.nets["generator"]

    @property
    def critic(self):
        return self.nets["critic"]

    def _latent(self) -> Tensor:
        """This process's slice of a global batch of latents."""
        return torch.randn(self.config.batch_size, self.config.latent_dim, generator=self.rng)[self._local].to(self.device)

    def train_step(self) -> dict[str, float]:
        """One generator step preceded by ``critic_steps`` critic steps; returns the losses (this rank's)."""
        c, G, U = self.config, self.generator, self.critic
        G.train(), U.train()
        for _ in range(c.critic_steps):
            x_real = self.dataset.batch(c.batch_size, self.rng)[self._local].to(self.device)
            with torch.no_grad():
                x_fake = G(self._latent())
            loss_u, stats_u = critic_loss(self.trained["critic"], x_real, x_fake, c.gp_weight)
            self.opt["critic"].zero_grad(set_to_none=True)
            with warnings.catch_warnings():
                # DDP flags the gradient of a (1, k) weight that the penalty's double backward gives
                # strides (1, 1) instead of (k, 1): the same memory layout, a false alarm
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
                loss_u.backward()
            self.opt["critic"].step()
        z = self._latent()
        # a random permutation of this rank's slice, drawn with the same random numbers for any world size
        perm = torch.rand(c.batch_size, generator=self.rng)[self._local].argsort().to(self.device)
        aux_name = entropy_term(c.entropy).aux_name
        aux = self.trained.get(aux_name) if aux_name else None
        U.requires_grad_(False)  # the plain critic: no DDP reduction is expected for it in this step
        try:
            loss_g, stats_g = generator_loss(U, self.trained["generator"](z), z, c.entropy, aux, perm,
                                             c.encoder_weight)
            updated = ["generator"] + ([aux_name] if aux_name else [])
            for name in updated:
                self.opt[name].zero_grad(set_to_none=True)
            loss_g.backward()
            for name in updated:
                self.opt[name].step()
        finally:
            U.requires_grad_(True)
        self.step += 1
        record = {"step": self.step, "critic_loss": float(loss_u.detach()), "generator_loss": float(loss_g.detach()),
                  **stats_u, **stats_g}
        self.history.append(record)
        return record

    def train(self, steps: int | None = None, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
              progress: bool | None = None, measure_every: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` generator steps in total (default: the recipe's; a resumed run counts its earlier steps).

        Writes ``checkpoint`` every ``checkpoint_every`` steps (0: only at the end) and at the end.
        Every ``measure_every`` steps (default: ``max(50, steps // 20)``; 0: never) and at
        the end, :meth:`measure` records the data set's quality of prior samples; the progress bar
        shows it beside the losses.
        """
        steps = self.recipe.steps if steps is None else steps
        if steps < self.step:
            raise ValueError(f"steps={steps} is below the {self.step} steps already trained")
        if measure_every is None:
            measure_every = max(50, steps // 20)
        show = progress_bar(steps, False if self.rank else progress, f"train {self.config.data}", initial=self.step)
        quality = self.quality_history[-1] if self.quality_history else None
        if measure_every and self.step == 0 and not self.rank:
            quality = self.measure()
        try:
            while self.step < steps:
                rec = self.train_step()
                if measure_every and not self.rank and (self.step % measure_every == 0 or self.step == steps):
                    quality = self.measure()
                if show is not None:  # the values first, so that the line this update prints shows them
                    if self.step % 20 == 0 or self.step == steps:
                        show.set_postfix(critic=f"{rec['critic_loss']:.3f}", gen=f"{rec['generator_loss']:.3f}",
                                         **_short(quality), refresh=False)
                    show.update(1)
                if checkpoint is not None and checkpoint_every and self.step % checkpoint_every == 0:
                    self.save(checkpoint)
        finally:
            if show is not None:
                show.close()
        if checkpoint is not None:
            self.save(checkpoint)
        return self.history

    def save(self, path: str | os.PathLike) -> Path:
        """Checkpoint everything needed to sample from the models or to resume exactly (rank 0 writes)."""
        if self.rank:
            return Path(path)
        return save_checkpoint(
            path,
            {
                "config": self.config.to_dict(),
                "models": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.opt.items()},
                "step": self.step,
                "rng_state": self.rng.get_state(),
                "history": self.history,
                "quality_history": self.quality_history,
            },
        )

    @classmethod
    def resume(cls, path: str | os.PathLike, device: str | None = None, distributed: bool | None = None,
               data: str | None = None) -> "Trainer":
        """A trainer restored from a checkpoint, ready to continue where it stopped.

        ``data``: where the run's data file now is, when it has moved (its fingerprint must match the recorded one).
        """
        saved = load_checkpoint(path)
        missing = [key for key in ("optimizers", "rng_state") if key not in saved]
        models = set(saved.get("models", {}))
        if missing or not models >= {"generator", "critic"}:
            raise CheckpointError(f"{path} holds a trained model without its training state (no optimiser states or "
                                  "random-number generator, as the shipped demo model): it can be refined but not "
                                  "resumed; train a new model instead")
        config = dict(saved["config"])
        if device is not None:
            config["device"] = device
        if data is not None:
            if config.get("data_fingerprint") is None:
                raise ValueError(f"{path} was trained on the built-in data set {config['data']!r}, not a file")
            config["data"] = str(data)
        elif config.get("data_fingerprint") is not None and not Path(config["data"]).exists():
            raise ValueError(f"{path} trained on {config['data']}, which is no longer there: give its new place "
                             "(--data PATH; in Python Trainer.resume(..., data=PATH))")
        trainer = cls(config, distributed=distributed)
        try:
            for k, net in trainer.nets.items():
                net.load_state_dict(saved["models"][k])
            for k, opt in trainer.opt.items():
                opt.load_state_dict(saved["optimizers"][k])
            trainer.rng.set_state(saved["rng_state"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path} cannot be resumed: {err}") from err
        trainer.step = int(saved.get("step", 0))
        trainer.history = list(saved.get("history", []))
        trainer.quality_history = list(saved.get("quality_history", []))
        return trainer

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``G(z)`` for ``n`` prior draws (its own seed; training randomness is untouched)."""
        z = torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.generator.eval()
        return self.generator(z)


def _short(quality: dict | None) -> dict[str, str]:
    """The quality shown in the progress bar: modes, HQ fraction or FD, compactly."""
    if not quality:
        return {}
    names = {"modes": "modes", "hq_fraction": "hq", "fd": "fd"}
    return {short: (f"{quality[k]:.0f}" if k == "modes" else f"{quality[k]:.3g}") for k, short in names.items()
            if quality.get(k) is not None}


def describe_quality(quality: dict | None) -> str:
    """``"hq_fraction 0.340, modes 25, kl 0.075"``: a quality row for one line of text (an undefined
    number, such as the KL of an empty mode histogram, shows as n/a)."""
    if not quality:
        return "no quality metric for this data set"

    def one(k: str, v: float) -> str:
        return f"{k} n/a" if math.isnan(v) else f"{k} {v:.0f}" if k == "modes" else f"{k} {v:.3f}"

    return ", ".join(one(k, v) for k, v in quality.items() if k != "step" and isinstance(v, (int, float)))


def _process_group(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world size)`` of the training job: ``(0, 1)`` unless it runs distributed."""
    if distributed and not active():
        raise ValueError("distributed=True needs an initialised torch.distributed process group (run under torchrun)")
    return (0, 1) if distributed is False else rank_and_world()


def _ddp(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)  # gradients are views of DDP's buckets: no copy


def train(config: TrainConfig | dict | None = None, steps: int | None = None, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int = 0, progress: bool | None = None, resume: bool = False) -> Trainer:
    """Train from scratch, or resume from ``checkpoint`` when ``resume`` and the file exists."""
    if resume and checkpoint is not None and Path(checkpoint).exists():
        trainer = Trainer.resume(checkpoint)
    else:
        trainer = Trainer(config)
    trainer.train(steps, checkpoint, checkpoint_every, progress)
    return trainer
