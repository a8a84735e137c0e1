#!/usr/bin/env bash
# The commands `dacl ablate` ran, in order (a resumed run lists each attempt).
set -e
cd /work/abl
# cpu_ablation_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation.yaml --seed_everything 0 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_seed0 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_center_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_center.yaml --seed_everything 0 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_center_seed0 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_softmax_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_softmax.yaml --seed_everything 0 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_softmax_seed0 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_softmax.yaml --seed_everything 0 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_softmax_seed0 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation.yaml --seed_everything 1 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_seed1 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_center_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_center.yaml --seed_everything 1 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_center_seed1 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_softmax_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_softmax.yaml --seed_everything 1 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_softmax_seed1 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation.yaml --seed_everything 2 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_seed2 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_center_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_center.yaml --seed_everything 2 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_center_seed2 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
# cpu_ablation_softmax_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_ablation_softmax.yaml --seed_everything 2 --trainer.logger.init_args.save_dir results/cpu_ablation/runs --trainer.logger.init_args.name cpu_ablation_softmax_seed2 --trainer.logger.init_args.version 0 --data.root ../shared/fer2013
