#!/usr/bin/env bash
# The commands dacl ablate ran, in order.
set -e
cd /work/run_abl
# cpu_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_center_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_center.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_center_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_softmax_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_softmax.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_softmax_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_center_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_center.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_center_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_softmax_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_softmax.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_softmax_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_center_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_center.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_center_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_softmax_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_softmax.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_softmax_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --ckpt_path /work/main/results/cpu_ablation_8ep/runs/cpu_seed3/version_0/checkpoints/last.ckpt
# cpu_center_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_center.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_center_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_softmax_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_softmax.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_softmax_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_seed4
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu.yaml --seed_everything 4 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_seed4 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_center_seed4
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_center.yaml --seed_everything 4 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_center_seed4 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_softmax_seed4
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_softmax.yaml --seed_everything 4 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_softmax_seed4 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_fixed_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_fixed.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_fixed_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_fixed_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_fixed.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_fixed_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_fixed_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_fixed.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_fixed_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_fixed_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_fixed.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_fixed_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_fixed_seed4
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_fixed.yaml --seed_everything 4 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_fixed_seed4 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013
# cpu_norm_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_ablation_8ep/runs/cpu_norm_seed0/version_0/checkpoints/last.ckpt
# cpu_norm_seed0
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 0 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed0 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null --ckpt_path /work/main/results/cpu_ablation_8ep/runs/cpu_norm_seed0/version_0/checkpoints/last.ckpt
# cpu_norm_seed1
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 1 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed1 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed2
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 2 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed2 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed3
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 3 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed3 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
# cpu_norm_seed4
/work/main/.venv/bin/python -m dacl.cli fit --config experiments/cpu_norm.yaml --seed_everything 4 --trainer.logger.init_args.save_dir /work/main/results/cpu_ablation_8ep/runs --trainer.logger.init_args.name cpu_norm_seed4 --trainer.logger.init_args.version 0 --data.root /work/shared/fer2013 --trainer.max_time null
