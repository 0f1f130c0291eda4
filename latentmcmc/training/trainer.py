"""Training loop for the energy-GAN: critic steps, generator step, progress, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
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
from .data import DATASETS, Dataset, load_dataset
from .entropy import entropy_term
from .objectives import critic_loss, generator_loss

__all__ = ["TrainConfig", "Trainer", "train"]

@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints; JSON-like values only).

    ``None`` fields take data-dependent defaults: latent 2 and gradient-penalty weight 0.1 for 2-D
    sets, latent 32 (digits) / 64 (stacked digits) and weight 10 for images.
    """

    data: str = "gaussians25"
    entropy: str = "dim"
    latent_dim: int | None = None
    width: int = 512
    depth: int = 3
    gp_weight: float | None = None
    encoder_weight: float = 1.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    critic_steps: int = 5
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    data_shape: tuple[int, ...] = field(default=(), repr=False)

    def resolved(self, dataset: Dataset) -> "TrainConfig":
        image = len(dataset.shape) > 1
        latent = self.latent_dim if self.latent_dim is not None else (
            2 if not image else (64 if dataset.name == "stacked-digits" else 32))
        gp = self.gp_weight if self.gp_weight is not None else (10.0 if image else 0.1)
        return dataclasses.replace(self, latent_dim=latent, gp_weight=gp, data_shape=tuple(dataset.shape),
                                   betas=tuple(self.betas))

    def validate(self) -> None:
        if self.data not in DATASETS:
            raise ValueError(f"unknown data set {self.data!r}; choose one of {', '.join(DATASETS)}")
        entropy_term(self.entropy)  # raises on an unknown name
        for name in ("width", "depth", "critic_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latent_dim is not None and int(self.latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for but CUDA is not available")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"], d["data_shape"] = list(self.betas), list(self.data_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["betas"] = tuple(d.get("betas", (0.5, 0.9)))
        d["data_shape"] = tuple(d.get("data_shape", ()))
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
        self.dataset = dataset or load_dataset(config.data)
        self.config = config.resolved(self.dataset)
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

    def train(self, steps: int, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
              progress: bool | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` generator steps in total (a resumed run counts its earlier steps).

        Writes ``checkpoint`` every ``checkpoint_every`` steps (0: only at the end) and at the end.
        """
        if steps < self.step:
            raise ValueError(f"steps={steps} is below the {self.step} steps already trained")
        bar = progress_bar(steps, False if self.rank else progress, f"train {self.config.data}", initial=self.step)
        try:
            while self.step < steps:
                rec = self.train_step()
                if bar is not None:
                    bar.update(1)
                    if self.step % 20 == 0 or self.step == steps:
                        bar.set_postfix(critic=f"{rec['critic_loss']:.3f}", gen=f"{rec['generator_loss']:.3f}",
                                        refresh=False)
                if checkpoint is not None and checkpoint_every and self.step % checkpoint_every == 0:
                    self.save(checkpoint)
        finally:
            if bar is not None:
                bar.close()
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
            },
        )

    @classmethod
    def resume(cls, path: str | os.PathLike, device: str | None = None, distributed: bool | None = None) -> "Trainer":
        """A trainer restored from a checkpoint, ready to continue where it stopped."""
        data = load_checkpoint(path)
        config = dict(data["config"])
        if device is not None:
            config["device"] = device
        trainer = cls(config, distributed=distributed)
        try:
            for k, net in trainer.nets.items():
                net.load_state_dict(data["models"][k])
            for k, opt in trainer.opt.items():
                opt.load_state_dict(data["optimizers"][k])
            trainer.rng.set_state(data["rng_state"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path} cannot be resumed: {err}") from err
        trainer.step = int(data.get("step", 0))
        trainer.history = list(data.get("history", []))
        return trainer

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``G(z)`` for ``n`` prior draws (its own seed; training randomness is untouched)."""
        z = torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.generator.eval()
        return self.generator(z)


def _process_group(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world size)`` of the training job: ``(0, 1)`` unless it runs distributed."""
    if distributed and not active():
        raise ValueError("distributed=True needs an initialised torch.distributed process group (run under torchrun)")
    return (0, 1) if distributed is False else rank_and_world()


def _ddp(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)  # gradients are views of DDP's buckets: no copy


def train(config: TrainConfig | dict | None = None, steps: int = 2000, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int = 0, progress: bool | None = None, resume: bool = False) -> Trainer:
    """Train from scratch, or resume from ``checkpoint`` when ``resume`` and the file exists."""
    if resume and checkpoint is not None and Path(checkpoint).exists():
        trainer = Trainer.resume(checkpoint)
    else:
        trainer = Trainer(config)
    trainer.train(steps, checkpoint, checkpoint_every, progress)
    return trainer
