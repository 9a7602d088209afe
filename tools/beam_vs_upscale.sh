#!/usr/bin/env bash
# Wall time of `drn upscale` against `drn beam` (2 local worker processes) on one folder, interleaved,
# and whether their outputs are byte-identical. README "Batch upscaling on Apache Beam" figures:
#   bash tools/beam_vs_upscale.sh ../shared/data/benchmark/Set14 drn_x2 2
# Needs apache-beam (pip install ".[beam]"). Works in a temporary folder.
set -euo pipefail
folder=$(realpath "${1:?usage: beam_vs_upscale.sh FOLDER [PRESET] [PAIRS]}")
preset=${2:-drn_x2}
pairs=${3:-2}
work=$(mktemp -d)
cd "$work"
for i in $(seq "$pairs"); do
  rm -rf up bm
  s=$(date +%s.%N); drn upscale "$folder" -o up --preset "$preset" -q; e=$(date +%s.%N)
  echo "pair $i: drn upscale $(echo "$e - $s" | bc) s (load $(cut -d' ' -f1 /proc/loadavg))"
  s=$(date +%s.%N)
  drn beam "$folder" bm --preset "$preset" --direct_num_workers=2 --direct_running_mode=multi_processing > /dev/null
  e=$(date +%s.%N)
  echo "pair $i: drn beam    $(echo "$e - $s" | bc) s (load $(cut -d' ' -f1 /proc/loadavg))"
  if cmp -s <(cd up && find . -type f | sort | xargs md5sum) \
            <(cd bm && find . -type f ! -name '_failures.jsonl' | sort | xargs md5sum); then
    echo "pair $i: outputs byte-identical"
  else
    echo "pair $i: outputs DIFFER"
  fi
done
rm -rf "$work"
