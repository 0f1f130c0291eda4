"""Helper of test_distributed.py (run as a script, alone or under torchrun): the gradients of one
training step of every network, saved by rank 0 to ``sys.argv[1]``.

Learning rates are set to 0, so the networks stay at their initial values and the gradients of
both runs are taken at the same point and on the same global batches.
"""

import gc
import sys

import torch
import torch.distributed as dist

from latentmcmc.process_group import leave, world_from_env
from latentmcmc.training import TrainConfig, Trainer

if __name__ == "__main__":
    if world_from_env() > 1:
        dist.init_process_group("gloo")
    trainer = Trainer(TrainConfig(data="ring8", entropy=sys.argv[2], width=16, batch_size=32, critic_steps=2))
    for opt in trainer.opt.values():
        opt.param_groups[0]["lr"] = 0.0
    for _ in range(2):
        trainer.train_step()
    if trainer.rank == 0:
        torch.save({f"{net}.{name}": p.grad for net, module in trainer.nets.items()
                    for name, p in module.named_parameters()}, sys.argv[1])
    # the DDP wrappers must go before the process group: a reducer destroyed after it (at interpreter
    # exit, as a module-level object would be) aborted the process (SIGABRT) about one run in ten
    del trainer
    gc.collect()
    leave()  # no rank tears the group down while another still uses it
