#!/usr/bin/env bash
# Supply-chain checks with cargo-deny: licenses, banned and duplicate crates, crate sources.
#
#   scripts/deny.sh              install the pinned cargo-deny once (cached in the cargo home),
#                                then `cargo deny check licenses bans sources` (deny.toml)
#   scripts/deny.sh advisories   also check the RustSec advisory database (needs network access
#                                to the advisory-db git repository; not run in CI, see docs/security.md)
#
# The advisories check is left out of the default run because CI cannot reach the RustSec
# advisory repository: a check that fails for lack of network would be noise, and one configured
# to pass offline would check nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2

installed="$(cargo deny --version 2>/dev/null || true)"
if [[ "$installed" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    echo "deny.sh: installing cargo-deny $CARGO_DENY_VERSION (once; cached in ${CARGO_HOME:-$HOME/.cargo}/bin)" >&2
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

checks=(licenses bans sources)
if [[ "${1:-}" == "advisories" ]]; then
    checks+=(advisories)
fi
exec cargo deny check "${checks[@]}"
