"""Evaluation entry points: likelihood bounds, KL usage, classification -> results/<run>/metrics/*.json.

    python -m analysis.evaluate --config results/<run>/configs/<model>.json \
        --checkpoint results/<run>/checkpoints/<model>/best.pt \
        --out results/<run>/metrics/<model>.json --figures results/<run>/figures
"""
