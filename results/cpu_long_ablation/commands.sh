#!/usr/bin/env bash
# The commands dacl ablate ran, in order.
set -e
cd /work/run_long
# cpu_long_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_center_seed0/version_0/checkpoints/last.ckpt
# cpu_long_softmax_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_softmax_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_softmax_seed0/version_0/checkpoints/last.ckpt
# cpu_long_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_center_seed1/version_0/checkpoints/last.ckpt
# cpu_long_softmax_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_softmax_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_softmax_seed1/version_0/checkpoints/last.ckpt
# cpu_long_softmax_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_softmax_seed1/version_0/checkpoints/last.ckpt
# cpu_long_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_seed2/version_0/checkpoints/last.ckpt
# cpu_long_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_seed2/version_0/checkpoints/last.ckpt
# cpu_long_center_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_long_center_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_center.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_center_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_long_ablation/runs/cpu_long_center_seed2/version_0/checkpoints/last.ckpt
# cpu_long_softmax_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_long_softmax.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_long_ablation/runs --trainer.logger.init_args.name cpu_long_softmax_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
