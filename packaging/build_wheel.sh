#!/usr/bin/env bash
# Build the pipeline-agent wheel into dist/ (or --out DIR).
#
#   packaging/build_wheel.sh                 dist/pipeline_agent-<version>-py3-none-any.whl
#   packaging/build_wheel.sh --wheelhouse    ... plus dist/wheelhouse/: wheels of every runtime
#                                            dependency, so the image builds with no network:
#
#   docker build -f packaging/Dockerfile --network none \
#       --build-arg PIP_INSTALL_ARGS=--no-index -t pipeline-agent dist/
#
# The wheelhouse is built by this machine's Python ($PYTHON, default python3): its version must
# be the image's (3.11 for python:3.11-slim and for the Debian bookworm base).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${REPO_ROOT}/dist"
WHEELHOUSE=0
EXTRAS="docker"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
        --wheelhouse) WHEELHOUSE=1; shift ;;
        --extras) EXTRAS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build_wheel.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

mkdir -p "${OUT}"
rm -f "${OUT}"/pipeline_agent-*.whl
echo "building the pipeline-agent wheel into ${OUT}"
"${PYTHON}" -m pip wheel --quiet --no-deps --wheel-dir "${OUT}" "${REPO_ROOT}"
wheel="$(ls "${OUT}"/pipeline_agent-*.whl)"
echo "built ${wheel}"

if [ "${WHEELHOUSE}" -eq 1 ]; then
    echo "collecting dependency wheels (extras: ${EXTRAS:-none}) into ${OUT}/wheelhouse"
    spec="${wheel}"
    if [ -n "${EXTRAS}" ]; then
        spec="${wheel}[${EXTRAS}]"
    fi
    "${PYTHON}" -m pip wheel --quiet --wheel-dir "${OUT}/wheelhouse" "${spec}"
    # The project's own wheel lives one level up; keep a single copy.
    rm -f "${OUT}"/wheelhouse/pipeline_agent-*.whl
    echo "wheelhouse: $(ls "${OUT}/wheelhouse" | wc -l) wheels"
fi
