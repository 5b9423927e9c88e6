"""A masked autoencoder on this project's ViT: the matched-compute baseline for tiny Toto."""
from toto_robot.mae.model import MAE, MAEConfig
from toto_robot.mae.trainer import MAEPretrainConfig, pretrain_mae

__all__ = ["MAE", "MAEConfig", "MAEPretrainConfig", "pretrain_mae"]
