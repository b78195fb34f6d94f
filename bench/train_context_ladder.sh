#!/usr/bin/env bash
# Trains the MNIST ladder with a context prior on the CPU (rate-limit issue): a 64-wide encoder (it runs on
# the sender), the slim 20-channel decoder and an 80-unit MADE (decoder < 2.5 M multiply-adds per image).
# Usage: bash bench/train_context_ladder.sh [OUT]   (logs: $OUT/*.log; needs LATENTLINK_MNIST or --data)
set -u
OUT=${1:-checkpoints/context}
mkdir -p "$OUT"
train() {  # name, beta, epochs
    echo "$(date -u +%FT%TZ) start $1" >> "$OUT/ladder.log"
    /usr/bin/time -v latentlink-train --family rd --prior context --context-width 80 --latent-dim 32 --channels 20 \
        --encoder-channels 64 --beta "$2" --epochs "$3" --batch-size 128 --learning-rate 0.002 \
        --out "$OUT/$1" --name "$1" --quiet > "$OUT/$1.log" 2>&1
    echo "$(date -u +%FT%TZ) done $1 (exit $?)" >> "$OUT/ladder.log"
}
train q2 4.6e-4 96  # sixth session: twice as long, beta up so that --effort 1 lands under MSE 0.011 (47 min)
#rain q1 1.2e-3 30
train q3 1.35e-4 72  # sixth session: likewise above 22.7 dB (25 min)
#rain q4 3e-5 36
