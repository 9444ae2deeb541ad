#!/usr/bin/env sh
# The verdict of `make gpu-check`, from what its parts left under OUT: one PASS/FAIL line for each thing the
# check promises (every part finished, every job of its sweeps is ok, the GPU targets, the harness's cost, the
# 6 minutes), a count, and exit 1 unless every line is PASS. The harness's cost may also be UNDECIDED (its
# rounds could not tell 3% from noise), which is not a PASS either. A check that prints FAIL and exits 0
# would pass in a script. A part the check had no time for (max_batch, the harness) is a note, not a verdict.
# Usage: sh benchmarks/gpu_check_summary.sh OUT SECONDS (SECONDS: how long the whole check took).
# Reads OUT/<part>.rc (each part's exit status), OUT/pytest-cuda.txt, OUT/<sweep>/report.md, OUT/pipelines.md,
# OUT/harness.md, OUT/max_batch.md (a skipped max_batch's note).
set -u
[ $# = 2 ] || { echo "bench: error: usage: sh benchmarks/gpu_check_summary.sh OUT SECONDS" >&2; exit 2; }
OUT=$1
TOOK=$2
LIMIT=360
passed=0
failed=0
undecided=0
unjudged=

mark() {  # mark OK WHAT: one verdict line; OK is 0 for PASS (printf: dash's echo would act on a backslash)
  if [ "$1" = 0 ]; then
    printf -- '- PASS: %s\n' "$2"
    passed=$((passed + 1))
  else
    printf -- '- FAIL: %s\n' "$2"
    failed=$((failed + 1))
  fi
}

verdicts() {  # verdicts BENCHMARK: its own PASS/FAIL/UNDECIDED lines, from OUT/BENCHMARK.md, counted
  [ -f "$OUT/$1.md" ] || return 0
  while IFS= read -r line; do
    case $1:$line in
      "pipelines:- "*"bench's loop (r) runs at"*)  # one pair of whole runs: the harness part judges this
        printf -- '- note (one pair cannot judge 3%%; the harness part can, below, where it ran): %s\n' "${line#- }" ;;
      "harness:- Per step: "*)  # the harness's cost in µs a step, beside its verdict: a figure, not a verdict
        printf -- '- note, %s\n' "${line#- }" ;;
      *":- PASS: "*) mark 0 "${line#- PASS: }" ;;
      *":- FAIL: "*) mark 1 "${line#- FAIL: }" ;;
      *":- UNDECIDED: "*)
        printf -- '%s\n' "$line"
        undecided=$((undecided + 1))
        ;;
      *":- ("?") "*" failed: "*) mark 1 "pipeline ${line#- }" ;;
    esac
  done < "$OUT/$1.md"
}

skipped() {  # skipped PART WHAT: a part gpu_check.sh had no time for: its note (OUT/PART.md), no verdict; the
  # last line names WHAT was not done
  printf -- '- note, %s\n' "$(sed 's/^- //' "$OUT/$1.md")"
  unjudged="$unjudged, $2 (see its note)"
}

ended() {  # ended PART: how the part's command ended, from its exit status
  rc=$(cat "$OUT/$1.rc" 2>/dev/null || echo none)
  case $rc in
    0) echo "finished" ;;
    124 | 137) echo "cut at its time limit" ;;
    none) echo "did not run" ;;
    skipped) echo "skipped" ;;  # gpu_check.sh's skip: the part's own line says why
    *) echo "exit $rc" ;;
  esac
}

# The CUDA tests: pytest's own closing line ("N passed, M skipped in T s"), without its rulers (else the
# file's last line: "Killed" when the grace ran out too). Exit 0 with nothing passed (every test skipped) is
# no check of the GPU.
result=$( (grep -E '^=+ .* in [0-9.]+s' "$OUT/pytest-cuda.txt" || tail -n 1 "$OUT/pytest-cuda.txt") 2>/dev/null \
  | tail -n 1 | sed 's/^=* *//; s/ *=*$//')
how=$(ended pytest-cuda)
# How many were selected (pytest's "collected N items / M deselected / K selected"): a cut run's "26 passed"
# did not say that 3 of 29 never ran.
selected=$(grep -m 1 -oE '/ [0-9]+ selected' "$OUT/pytest-cuda.txt" 2>/dev/null | grep -oE '[0-9]+')
[ "$how" = finished ] && case $result in *" passed"*) true ;; *) false ;; esac
mark $? "the CUDA tests $how: ${result:-no output}${selected:+ (of $selected selected)}"
# A skipped CUDA test (no NVML, say) checked nothing: a FAIL of its own, with pytest's reason (-rs). A here-
# document, not a pipe: a loop at the end of a pipe runs in a subshell, whose counts would be lost.
skips=$(grep '^SKIPPED \[' "$OUT/pytest-cuda.txt" 2>/dev/null)
if [ -n "$skips" ]; then
  while IFS= read -r line; do mark 1 "a CUDA test was skipped: ${line#SKIPPED }"; done <<EOF
$skips
EOF
fi

# Each sweep: its report's "Runs: N (N ok)" line, and nothing but ok. max_batch runs only in time the other
# parts left: one the check skipped has only its note, which says so (its search on a GPU is the CUDA tests').
for sweep in sweep max_batch; do
  how=$(ended "$sweep")
  if [ "$how" = skipped ]; then
    skipped "$sweep" "$sweep not run"
    continue
  fi
  runs=$(grep -m 1 '^Runs: ' "$OUT/$sweep/report.md" 2>/dev/null)
  echo "$runs" | awk '{ n = $2; line = $0 } END { exit !(line == "Runs: " n " (" n " ok)") }' && [ "$how" = finished ]
  mark $? "$sweep $how: ${runs:-no report}"
done

# The benchmarks: each one's own verdict lines (the pipelines': the GPU targets; the harness's: its cost, over
# alternated rounds), and a FAIL for any pipeline that failed or a benchmark that did not finish. A harness the
# check skipped (too little time left) has only its note, which says so and is no verdict: PASS or FAIL is
# `make harness`'s, run alone (on a GPU its 3% takes hundreds of rounds, more than the check's 6 minutes
# hold). The pipelines' single pair of (r) and (d) is shown as a note: one pair cannot judge 3% (README
# "GPU check").
for bench in pipelines harness; do
  how=$(ended $bench)
  if [ "$how" = skipped ]; then  # no time left: `make harness` judges it alone
    skipped $bench "the $bench not judged"
    continue
  fi
  [ "$how" = finished ]
  mark $? "the $bench benchmark $how"
  verdicts $bench
done

[ "$TOOK" -le "$LIMIT" ]
mark $? "gpu-check took $TOOK s (target ≤ $LIMIT s)"

echo "gpu-check: $passed PASS, $failed FAIL$([ "$undecided" = 0 ] || echo ", $undecided UNDECIDED")$unjudged; figures in $OUT"
[ "$failed" = 0 ] && [ "$undecided" = 0 ]
