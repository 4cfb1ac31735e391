#!/usr/bin/env bash
# Runs the seeded chaos soak (tests/api/soak.rs) on real PostgreSQL and SQLite through
# scripts/test.sh, with the MCSS_SOAK_* variables of the environment (docs/testing.md).
#
#   MCSS_SOAK_SEED=1234 MCSS_SOAK_SECS=600 scripts/soak.sh
#   MCSS_SOAK_SEED=1234 MCSS_SOAK_SERIES=1 MCSS_SOAK_SCENARIO=steps MCSS_SOAK_BACKEND=sqlite scripts/soak.sh
#
# MCSS_SOAK_SCENARIO: chaos | steps | all (default all); MCSS_SOAK_BACKEND: sqlite |
# postgres | both (default both). Extra arguments go to cargo nextest. Tests run one at a
# time with their output shown, and the repository's 5-minute test timeout is lifted to fit
# the run.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${MCSS_SOAK_SCENARIO:-all}" in
  chaos) scenario='a_seeded_chaos_soak' ;;
  steps) scenario='every_step' ;;
  all) scenario='' ;;
  *) echo "MCSS_SOAK_SCENARIO must be chaos, steps or all, got '${MCSS_SOAK_SCENARIO}'" >&2; exit 2 ;;
esac
case "${MCSS_SOAK_BACKEND:-both}" in
  sqlite) backend='on_sqlite' ;;
  postgres) backend='on_postgres' ;;
  both) backend='on_' ;;
  *) echo "MCSS_SOAK_BACKEND must be sqlite, postgres or both, got '${MCSS_SOAK_BACKEND}'" >&2; exit 2 ;;
esac

# Chaos, settling and start-up of one scenario, in minutes, with room to spare.
secs=${MCSS_SOAK_SECS:-30}
settle=${MCSS_SOAK_SETTLE_SECS:-120}
steps=${MCSS_SOAK_STEPS:-25}
minutes=$(( (secs + settle + steps * settle / 3 + 300) / 60 + 1 ))
config=$(mktemp)
trap 'rm -f "$config"' EXIT
cat >"$config" <<EOF
[profile.default]
slow-timeout = { period = "60s", terminate-after = $minutes }
retries = 0
fail-fast = false
EOF

./scripts/test.sh --config-file "$config" --test api --no-capture \
  -E "test(/^soak::${scenario}.*${backend}/)" "$@"
