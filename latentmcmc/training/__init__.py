"""Learning the critic U and generator G with the energy-GAN objective (Kumar et al. 2019)."""

from .build import build_networks
from .data import DATASETS, Dataset, DatasetEntry, load_dataset
from .entropy import ENTROPY_TERMS, EntropyTerm, dim_mi_loss, encoder_loss
from .networks import Critic, Encoder, Generator, StatisticsNetwork
from .objectives import critic_loss, generator_loss, gradient_penalty
from .trainer import TrainConfig, Trainer, train

__all__ = [
    "DATASETS", "Dataset", "DatasetEntry", "load_dataset", "ENTROPY_TERMS", "EntropyTerm", "Generator", "Critic", "StatisticsNetwork", "Encoder", "build_networks",
    "critic_loss", "gradient_penalty", "generator_loss", "dim_mi_loss", "encoder_loss", "TrainConfig", "Trainer", "train",
]
