#!/usr/bin/env bash
# The commands dacl ablate ran, in order.
set -e
cd /work/seedrun
# cpu_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 1 --trainer.logger.init_args.save_dir results/cpu_seeds/runs --trainer.logger.init_args.name cpu_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 2 --trainer.logger.init_args.save_dir results/cpu_seeds/runs --trainer.logger.init_args.name cpu_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
