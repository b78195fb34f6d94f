#!/usr/bin/env bash
# Trains the shipped photo ladder on ../shared/data/photos (never on Kodak) on the CPU.
# One base model, then fine-tunes from it for a lower and a higher rate, then a context for each.
# Usage: bash bench/train_photo_ladder.sh [PHOTOS] [CHECKPOINTS]   (logs: $CHECKPOINTS/*.log)
set -u
DATA=${1:-../shared/data/photos}
CK=${2:-checkpoints}
mkdir -p "$CK"
train() {  # name, then latentlink-train arguments
    local name=$1; shift
    echo "$(date -u +%FT%TZ) start $name: $*" >> "$CK/ladder.log"
    /usr/bin/time -v latentlink-train --images "$DATA" --out "models/$name" --name "$name" \
        --checkpoint "$CK/$name.npz" --crop 192 --photo-batch 4 "$@" > "$CK/$name.log" 2>&1
    echo "$(date -u +%FT%TZ) done $name (exit $?)" >> "$CK/ladder.log"
}
train photo-q2 --lambda 0.0067 --steps 16000
train photo-q3 --lambda 0.013 --steps 5000 --learning-rate 3e-4 --init "$CK/photo-q2.npz"
train photo-q1 --lambda 0.0035 --steps 5000 --learning-rate 3e-4 --init "$CK/photo-q2.npz"
# Then (ninth session) a checkerboard context fitted to each rung, its transforms unchanged.
for name in photo-q1 photo-q2 photo-q3; do
    echo "$(date -u +%FT%TZ) start $name context" >> "$CK/ladder.log"
    latentlink-train --images "$DATA" --fit-context --init "models/$name" --out "$CK/$name-context" --name "$name" \
        --steps 6000 > "$CK/$name-context.log" 2>&1 && rm -rf "models/$name" && mv "$CK/$name-context" "models/$name"
    echo "$(date -u +%FT%TZ) done $name context (exit $?)" >> "$CK/ladder.log"
done
