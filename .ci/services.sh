#!/usr/bin/env bash
# Start the services the test suite needs on a fresh Debian 12 machine: PostgreSQL 15 on
# 127.0.0.1:5432 (user/password postgres/postgres) and a Docker engine with a local base image
# `pipeline-agent-base:latest` (debootstrap'd bookworm: no registry is reachable from CI).
# S3 needs nothing here: the tests start moto's server themselves. iproute2 (`ip netns`)
# for the fleet tests, which make their hosts as network namespaces (as root). Debian's Chromium is
# installed for the web UI's browser tests (Playwright drives it; it downloads no browser).
#
# Slurm: a single-node cluster on localhost (munged, slurmctld, slurmd from Debian's slurm-wlm),
# for `agent slurm`'s tests; `bash .ci/services.sh start_slurm` starts only that.
#
# Idempotent: every step checks first and only does what is missing, so a rerun takes seconds.
# Needs root (or sudo). Environment knobs:
#   SKIP_POSTGRES=1 / SKIP_DOCKER=1      leave that service alone
#   SKIP_CHROMIUM=1                      do not install Chromium (the UI's browser tests)
#   SKIP_SLURM=1                         do not install or start Slurm (the Slurm glue's tests)
#   PG_CLUSTER=main, PG_PORT=5432        the Debian cluster to start (or create) and its port
#   PIPELINE_AGENT_CACHE=DIR             where the base rootfs tarball is cached
#                                        (default /var/cache/pipeline-agent)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_VERSION=15
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_PORT="${PG_PORT:-5432}"
PG_URL="postgresql+psycopg://postgres:postgres@127.0.0.1:${PG_PORT}/postgres"
BASE_IMAGE="pipeline-agent-base:latest"
BASE_PACKAGES="python3,python3-venv,git,ca-certificates"
CACHE_DIR="${PIPELINE_AGENT_CACHE:-/var/cache/pipeline-agent}"
ROOTFS_TAR="${CACHE_DIR}/bookworm-minbase-$(echo "${BASE_PACKAGES}" | tr ',' '_').tar"
DOCKERD_LOG=/tmp/dockerd.log

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

say() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
    # apt_install PKG...: install Debian packages, updating the lists once per run.
    if [ "${APT_UPDATED}" -eq 0 ]; then
        say "apt-get update"
        ${SUDO} apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    ${SUDO} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() {
    # wait_for SECONDS DESCRIPTION CMD...: poll CMD every half second until it succeeds.
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            return 1
        fi
        sleep 0.5
    done
    say "${what} is up"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() { echo "/usr/lib/postgresql/${PG_VERSION}/bin"; }

pg_password_login_works() {
    PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "${PG_PORT}" -U postgres \
        -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

as_postgres() {
    # Run a command as the postgres OS user from a directory it can read.
    (cd / && ${SUDO} runuser -u postgres -- "$@")
}

start_pg_cluster() {
    # Start the Debian cluster 15/main (creating it if there is none); without
    # postgresql-common, fall back to initdb + pg_ctl into a directory of our own.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local row
        row="$(pg_lsclusters -h | awk -v v="${PG_VERSION}" -v c="${PG_CLUSTER}" '$1 == v && $2 == c')"
        if [ -z "${row}" ]; then
            say "creating cluster ${PG_VERSION}/${PG_CLUSTER} on port ${PG_PORT}"
            ${SUDO} pg_createcluster "${PG_VERSION}" "${PG_CLUSTER}" --port "${PG_PORT}" >/dev/null
            row="$(pg_lsclusters -h | awk -v v="${PG_VERSION}" -v c="${PG_CLUSTER}" '$1 == v && $2 == c')"
        fi
        if [ "$(echo "${row}" | awk '{print $3}')" != "${PG_PORT}" ]; then
            die "cluster ${PG_VERSION}/${PG_CLUSTER} listens on port $(echo "${row}" | awk '{print $3}'), not ${PG_PORT}"
        fi
        if [ "$(echo "${row}" | awk '{print $4}')" = "online" ]; then
            say "cluster ${PG_VERSION}/${PG_CLUSTER} already running"
        else
            say "starting cluster ${PG_VERSION}/${PG_CLUSTER} (pg_ctlcluster)"
            ${SUDO} pg_ctlcluster "${PG_VERSION}" "${PG_CLUSTER}" start
        fi
        return
    fi
    local data=/var/lib/pipeline-agent/pg${PG_VERSION}
    ${SUDO} mkdir -p "${data}"
    ${SUDO} chown postgres:postgres "${data}"
    if [ ! -f "${data}/PG_VERSION" ]; then
        say "initdb into ${data}"
        as_postgres "$(pg_bin)/initdb" -D "${data}" -U postgres --auth-local=peer \
            --auth-host=scram-sha-256 >/dev/null
    fi
    if ! as_postgres "$(pg_bin)/pg_ctl" -D "${data}" status >/dev/null 2>&1; then
        say "starting PostgreSQL from ${data} (pg_ctl)"
        ${SUDO} mkdir -p /var/run/postgresql
        ${SUDO} chown postgres:postgres /var/run/postgresql
        as_postgres "$(pg_bin)/pg_ctl" -D "${data}" -l "${data}/server.log" -w \
            -o "-p ${PG_PORT} -c listen_addresses=127.0.0.1" start >/dev/null
    fi
}

allow_password_auth() {
    # Debian's default pg_hba.conf already has `host all all 127.0.0.1/32 scram-sha-256`;
    # add it when someone's cluster lacks it.
    local hba
    hba="$(as_postgres psql -p "${PG_PORT}" -Atqc 'show hba_file')"
    if ! ${SUDO} grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+(scram-sha-256|md5)' "${hba}"; then
        say "allowing password logins from 127.0.0.1 in ${hba}"
        ${SUDO} sed -i '1i host all all 127.0.0.1/32 scram-sha-256' "${hba}"
    fi
    as_postgres psql -p "${PG_PORT}" -qc "alter system set listen_addresses = 'localhost'" >/dev/null
    as_postgres psql -p "${PG_PORT}" -Atqc 'select pg_reload_conf()' >/dev/null
}

setup_postgres() {
    say "== PostgreSQL ${PG_VERSION} =="
    if pg_password_login_works; then
        say "postgres@127.0.0.1:${PG_PORT} already accepts password logins"
    else
        if [ ! -x "$(pg_bin)/postgres" ]; then
            apt_install "postgresql-${PG_VERSION}" postgresql-client
        fi
        start_pg_cluster
        wait_for 60 "PostgreSQL (pg_isready)" pg_isready -q -h 127.0.0.1 -p "${PG_PORT}" \
            || die "PostgreSQL did not become ready; see /var/log/postgresql/"
        say "setting the postgres user's password"
        as_postgres psql -p "${PG_PORT}" -qc "alter user postgres password 'postgres'" >/dev/null
        allow_password_auth
        # listen_addresses only changes on restart; it is 'localhost' on every default setup.
        wait_for 15 "password login to 127.0.0.1:${PG_PORT}" pg_password_login_works \
            || die "cannot log in as postgres/postgres on 127.0.0.1:${PG_PORT}"
    fi
    printf '%s\n' "${PG_URL}" >"${REPO_ROOT}/.ci/pg_url"
    say "PostgreSQL URL (also in .ci/pg_url): ${PG_URL}"
}

# -------------------------------------------------------------------- Docker

start_dockerd() {
    if ! command -v dockerd >/dev/null 2>&1; then
        # docker.io brings dockerd, containerd and runc. /usr/local/bin/docker (a newer client)
        # still wins on PATH where present; it negotiates the API version down.
        apt_install docker.io
    fi
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        say "removing stale /var/run/docker.pid"
        ${SUDO} rm -f /var/run/docker.pid
    fi
    if [ -f /var/run/docker.pid ]; then
        say "dockerd already running (pid $(cat /var/run/docker.pid)); waiting for it"
    else
        # A sandbox without full network control: no iptables rules, no NAT. The default bridge
        # still exists, so containers and `docker build` get a network namespace (isolated from
        # the outside); pass --network host where a container must reach PyPI.
        # Under a subreaper (tini -s) so that exited containerd shims, which re-parent to it,
        # are reaped: PID 1 of a sandbox often is no real init and would collect zombies.
        local reaper=()
        if command -v tini >/dev/null 2>&1; then
            reaper=(tini -s --)
        fi
        say "starting dockerd (log: ${DOCKERD_LOG})"
        ${SUDO} setsid nohup "${reaper[@]}" dockerd --iptables=false --ip-masq=false \
            >"${DOCKERD_LOG}" 2>&1 </dev/null &
    fi
    wait_for 90 "Docker engine" docker info \
        || { tail -n 30 "${DOCKERD_LOG}" >&2 || true; die "dockerd did not come up; see ${DOCKERD_LOG}"; }
}

debian_mirror() {
    # The first Debian mirror apt uses for bookworm (not the security one).
    local uri
    uri="$(grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v -- '-security' | grep -E '[[:space:]]bookworm[[:space:]]' \
        | sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}' | head -n 1 || true)"
    if [ -z "${uri}" ]; then
        uri="$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/-security/ {
                    if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {
                        s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit
                    }
                }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

build_rootfs_tarball() {
    if ! command -v debootstrap >/dev/null 2>&1; then
        apt_install debootstrap
    fi
    local mirror rootfs
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d /var/tmp/pipeline-agent-rootfs.XXXXXX)"
    say "debootstrap --variant=minbase --include=${BASE_PACKAGES} bookworm from ${mirror}"
    if ! ${SUDO} debootstrap --variant=minbase --include="${BASE_PACKAGES}" \
        bookworm "${rootfs}" "${mirror}" >/tmp/debootstrap.log 2>&1; then
        tail -n 30 /tmp/debootstrap.log >&2 || true
        ${SUDO} rm -rf "${rootfs}"
        die "debootstrap failed; see /tmp/debootstrap.log"
    fi
    # Slimmer image, and no stale package lists baked in.
    ${SUDO} rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
        "${rootfs}"/var/log/*.log
    ${SUDO} mkdir -p "${CACHE_DIR}"
    ${SUDO} tar -C "${rootfs}" --numeric-owner -cf "${ROOTFS_TAR}.tmp" .
    ${SUDO} mv "${ROOTFS_TAR}.tmp" "${ROOTFS_TAR}"
    ${SUDO} rm -rf "${rootfs}"
    say "cached rootfs at ${ROOTFS_TAR} ($(du -h "${ROOTFS_TAR}" | cut -f1))"
}

build_base_image() {
    if docker image inspect "${BASE_IMAGE}" >/dev/null 2>&1; then
        say "image ${BASE_IMAGE} already present"
        return
    fi
    if [ -s "${ROOTFS_TAR}" ]; then
        say "using cached rootfs ${ROOTFS_TAR}"
    else
        build_rootfs_tarball
    fi
    say "docker import ${ROOTFS_TAR} -> ${BASE_IMAGE}"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "${ROOTFS_TAR}" "${BASE_IMAGE}" >/dev/null
    docker run --rm --network none "${BASE_IMAGE}" python3 -c 'import venv, ensurepip' \
        || die "${BASE_IMAGE} has no working python3 -m venv"
    say "image ${BASE_IMAGE} ready"
}

setup_docker() {
    say "== Docker =="
    if docker info >/dev/null 2>&1; then
        say "Docker engine already running"
    else
        start_dockerd
    fi
    build_base_image
}

# ------------------------------------------------------------------- systemd

setup_systemd_analyze() {
    say "== systemd-analyze (unit file checks) =="
    if command -v systemd-analyze >/dev/null 2>&1; then
        say "systemd-analyze present"
    else
        apt_install systemd
    fi
}

setup_iproute2() {
    say "== iproute2 (network namespaces: tests/fleet's hosts) =="
    if command -v ip >/dev/null 2>&1; then
        say "ip present"
    else
        apt_install iproute2
    fi
}

setup_compose_cli() {
    say "== docker compose (compose file check) =="
    if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
        say "a compose command is present"
    else
        apt_install docker-compose  # Debian has no compose v2 plugin; v1 checks the file too
    fi
}

setup_chromium() {
    say "== Chromium (the web UI's browser tests, driven by Playwright) =="
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        say "chromium present"
    else
        apt_install chromium  # Playwright cannot download its own browser here
    fi
}

# --------------------------------------------------------------------- Slurm

SLURM_CONF=/etc/slurm/slurm.conf
SLURM_STATE=/var/lib/pipeline-agent/slurm

slurm_answers() { scontrol ping 2>/dev/null | grep -q 'UP'; }
slurm_node_up() { sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

write_slurm_conf() {
    # One node, this host, all its CPUs; no accounting database (so no sacct: a finished
    # job's state comes from `scontrol show job` for MinJobAge seconds, then from the
    # jobcomp/filetxt log).
    local host cpus
    host="$(hostname -s)"
    cpus="$(nproc)"
    ${SUDO} mkdir -p /etc/slurm "${SLURM_STATE}/ctld" "${SLURM_STATE}/d"
    ${SUDO} tee "${SLURM_CONF}" >/dev/null <<EOF
# Written by .ci/services.sh (start_slurm): a single-node test cluster.
ClusterName=pipeline-agent
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${SLURM_STATE}/jobcomp.log
StateSaveLocation=${SLURM_STATE}/ctld
SlurmdSpoolDir=${SLURM_STATE}/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
ReturnToService=2
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
NodeName=${host} CPUs=${cpus} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    if pgrep -u munge -x munged >/dev/null 2>&1; then
        say "munged already running"
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        say "making a munge key (mungekey -c)"
        ${SUDO} mungekey -c -f -k /etc/munge/munge.key
    fi
    ${SUDO} chown munge:munge /etc/munge/munge.key
    ${SUDO} chmod 0400 /etc/munge/munge.key
    ${SUDO} mkdir -p /run/munge /var/log/munge /var/lib/munge
    ${SUDO} chown munge:munge /run/munge /var/log/munge /var/lib/munge
    say "starting munged"
    ${SUDO} runuser -u munge -- /usr/sbin/munged
    wait_for 15 "munged" munge -n \
        || die "munged did not start; see /var/log/munge/munged.log"
}

start_slurm() {
    say "== Slurm (single node on localhost) =="
    if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
        apt_install slurm-wlm munge
    fi
    if [ ! -f "${SLURM_CONF}" ] || ! grep -q 'start_slurm' "${SLURM_CONF}"; then
        write_slurm_conf
    fi
    start_munged
    if ! pgrep -x slurmctld >/dev/null 2>&1; then
        say "starting slurmctld (log: /var/log/slurmctld.log)"
        ${SUDO} /usr/sbin/slurmctld
    fi
    wait_for 30 "slurmctld" slurm_answers || die "slurmctld did not answer; see /var/log/slurmctld.log"
    if ! pgrep -x slurmd >/dev/null 2>&1; then
        say "starting slurmd (log: /var/log/slurmd.log)"
        ${SUDO} /usr/sbin/slurmd
    fi
    wait_for 30 "slurmd (node $(hostname -s))" slurm_node_up \
        || die "the node did not come up; see /var/log/slurmd.log and \`sinfo -N\`"
}

main() {
    local started=${SECONDS}
    if [ "${SKIP_POSTGRES:-0}" != 1 ]; then setup_postgres; fi
    if [ "${SKIP_DOCKER:-0}" != 1 ]; then setup_docker; fi
    setup_systemd_analyze
    setup_iproute2
    if [ "${SKIP_DOCKER:-0}" != 1 ]; then setup_compose_cli; fi
    if [ "${SKIP_CHROMIUM:-0}" != 1 ]; then setup_chromium; fi
    if [ "${SKIP_SLURM:-0}" != 1 ]; then start_slurm; fi
    say "S3: nothing to start (tests run moto's server themselves)"
    say "done in $((SECONDS - started))s"
}

if [ "${1:-}" = start_slurm ]; then
    start_slurm
else
    main "$@"
fi
