#!/usr/bin/env bash
# Stage what benchmarks/quality.py needs on a GPU machine that reaches no registry and does not
# get ../shared: the data files it reads (about 24 MB) under .stage/data, and Python 3.12 wheels
# of optuna and implicit with what they need (about 15 MB) under .whl. Both folders are added to
# .git/info/exclude; carry them (the device tool's `carry: [".stage", ".whl"]`) and run there:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:src python benchmarks/quality.py --data .stage/data --device cuda ...
#
# Usage: benchmarks/stage_device.sh [SHARED_DATA]   (default: ../shared/data beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/data}"
for ignored in /.stage/ /.whl/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done
files=(movielens-1m-implicit/train.txt movielens-1m-implicit/test.txt
       movielens-latest-small/ratings.csv lastfm-hetrec2011/user_artists.dat
       movielens-20m-dsstne-1024/movielens_input_1024.txt movielens-20m-dsstne-1024/index.txt
       citeulike-a-selfrec/train.txt citeulike-a-selfrec/valid.txt citeulike-a-selfrec/test.txt
       gowalla-ngcf/s_adj_mat.npz gowalla-ngcf/test.txt
       amazon-beauty-selfrec/train.txt amazon-beauty-selfrec/valid.txt amazon-beauty-selfrec/test.txt)
for f in "${files[@]}"; do
    mkdir -p ".stage/data/$(dirname "$f")"
    cp "$src/$f" ".stage/data/$f"
done
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl implicit==0.7.3 optuna threadpoolctl tqdm sqlalchemy alembic \
    colorlog pyyaml packaging mako markupsafe greenlet typing_extensions
du -sh .stage .whl
