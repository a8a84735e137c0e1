# The distilled default model, 2026-12-07, AMD EPYC (avx512_bf16), 2 threads, bf16.
# From a git worktree of main at a62434f:
git -C /work/main worktree add --detach /work/run_distill a62434f
cd /work/run_distill
OMP_NUM_THREADS=2 PYTHONPATH=/work/run_distill /work/main/.venv/bin/python -m dacl fit --config experiments/cpu_distill.yaml --data.root /work/shared/fer2013 --trainer.max_time null --trainer.logger.init_args.save_dir /work/runs_distill
# metrics.csv: /work/runs_distill/cpu_distill/version_0/metrics.csv, copied here.
# val.json: the best checkpoint through `dacl validate` (Lightning's validate via dacl.cli.build_cli), one call per view:
cd /work/main
for tta in none flip crops; do
  dacl validate --config experiments/cpu_distill.yaml --ckpt_path /work/runs_distill/cpu_distill/version_0/checkpoints/best-epoch=38.ckpt --data.root /work/shared/fer2013 --data.tta $tta
done
