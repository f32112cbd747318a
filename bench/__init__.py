"""Benchmarks of the VHE reproduction (see bench/README.md): ``python -m bench.run_all [--small]``.

bench_loader (episode sampling vs a per-element baseline), bench_train (training images/s and
data-loading share), bench_eval (log_marginal classes/s at K=1000), bench_sample (PixelCNN
sampling time for 64 images). Results go to bench/results/ as JSON (+ summary.md).
"""
