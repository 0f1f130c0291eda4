"""Learning the critic U and generator G with the energy-GAN objective (Kumar et al. 2019)."""

from .data import DATASETS, Dataset, load_dataset
from .networks import Critic, Encoder, Generator, StatisticsNetwork, build_networks
from .objectives import critic_loss, dim_mi_loss, encoder_loss, generator_loss, gradient_penalty
from .trainer import TrainConfig, Trainer, train

__all__ = [
    "DATASETS", "Dataset", "load_dataset", "Generator", "Critic", "StatisticsNetwork", "Encoder", "build_networks",
    "critic_loss", "gradient_penalty", "generator_loss", "dim_mi_loss", "encoder_loss", "TrainConfig", "Trainer", "train",
]
