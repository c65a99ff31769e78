#!/usr/bin/env bash
# s3-sync.sh: keeps a local regiongate data directory in step with versioned releases in
# object storage (S3 or S3-compatible: MinIO, Ceph RGW, R2, ...), or in a plain directory.
# A new version is downloaded into its own directory, verified, and only then put in service
# with one atomic symlink swap, which regiongate's file watcher sees and reloads.
#
#   s3-sync.sh sync                   one pass (init container, cron/timer, tests)
#   s3-sync.sh loop                   a pass every $INTERVAL seconds until SIGTERM (sidecar)
#   s3-sync.sh publish DIR VERSION    producer side: upload DIR as release VERSION, then
#                                     point LATEST at it
#
# Source layout (SOURCE = s3://bucket/prefix, file:///path or /path):
#
#   SOURCE/LATEST                      one line: the version to serve
#   SOURCE/releases/<version>/...      a complete data directory (countries, groups.toml,
#                                      licenses/, ip/, ...) plus SHA256SUMS of every file
#
# Releases are immutable: publish refuses an existing version. Roll back by pointing LATEST at
# an older version (or pin VERSION on the consumers).
#
# Local layout (DEST):
#
#   DEST/releases/<version>/           verified releases, read-only; the KEEP most recently
#                                      served are kept, the one in service always
#   DEST/releases/.incoming-<v>-<pid>/ a download in progress (never served)
#   DEST/current -> releases/<version> the data directory regiongate serves
#                                      (--regions DEST/current), swapped with ln -sfn + mv -T
#   DEST/sync-status                   the outcome of the last pass (key=value lines: result,
#                                      wanted, served, data_version, time, message)
#
# regiongate's watcher sees the swap of `current` (it watches the link's parent for that one
# entry and moves its recursive watch to the new target; tests/it/reload.rs and
# tests/it/sync.rs). Downloads, pruning and the status file are outside `current` and cause
# no reload. For a server that does not watch (watch = false), set RELOAD_CMD.
#
# Verification before a swap: the version name is plain ([A-Za-z0-9._-], not starting with a
# dot); SHA256SUMS lists every regular file and every sum matches; the release holds no
# symbolic links or special files; and `regiongate validate` accepts the directory (see
# VALIDATE). A release that fails stays out of service; the previous one keeps serving.
#
# Environment:
#   SOURCE           where releases are (required)
#   DEST             local root (required for sync/loop)
#   VERSION          serve this version instead of the one LATEST names (pin / roll back)
#   KEEP             releases kept locally, the one in service included (default 3, min 1)
#   INTERVAL         seconds between passes of `loop` (default 60)
#   VALIDATE         auto (default: validate when the regiongate binary is found), always, never
#   REGIONGATE_BIN   the regiongate binary for validation (default: `regiongate` on PATH)
#   S3_TOOL          aws or rclone for s3:// sources (default: aws if installed, else rclone)
#   S3_ENDPOINT_URL  endpoint of an S3-compatible store (aws --endpoint-url, rclone endpoint)
#   RELOAD_CMD       command run after a swap, for a server with `watch = false`
#                    (e.g. `systemctl reload regiongate`, or curl POST /admin/reload)
#   STATUS_FILE      where the outcome of each pass is written (default DEST/sync-status)
#
# Credentials come from the tools' usual environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
# a web identity token, RCLONE_S3_*). Exit status: 0 serving the wanted version, 1 a pass
# failed (the previous version still serves), 2 bad usage.
#
# Another transfer tool is one more branch in fetch_latest/fetch_release/put_release below;
# everything else (verification, swap, prune) does not depend on where the bytes came from.
# Tested: file:// by tests/it/sync.rs against the real server; s3:// with the aws CLI (1.45)
# and rclone (1.60, Debian bookworm's) against a local S3 server (moto) by hand.

set -euo pipefail

PROG=${0##*/}
KEEP=${KEEP:-3}
INTERVAL=${INTERVAL:-60}
VALIDATE=${VALIDATE:-auto}
DATA_VERSION=""

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$*" >&2; }
die_usage() {
    log "$*"
    sed -n '2,12p' "$0" >&2
    exit 2
}

valid_version() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]]; }

# ---- Where the bytes come from (pluggable) ------------------------------------------------

SCHEME=""
LOCAL_ROOT=""
S3_URL=""
parse_source() {
    [[ -n ${SOURCE:-} ]] || die_usage "SOURCE is not set"
    case $SOURCE in
        file://*) SCHEME=file LOCAL_ROOT=${SOURCE#file://} ;;
        /*) SCHEME=file LOCAL_ROOT=$SOURCE ;;
        s3://*)
            SCHEME=s3 S3_URL=${SOURCE%/}
            if [[ -z ${S3_TOOL:-} ]]; then
                if command -v aws >/dev/null 2>&1; then S3_TOOL=aws; else S3_TOOL=rclone; fi
            fi
            case $S3_TOOL in
                aws | rclone) command -v "$S3_TOOL" >/dev/null 2>&1 || die_usage "$S3_TOOL is not installed" ;;
                *) die_usage "S3_TOOL must be aws or rclone, not '$S3_TOOL'" ;;
            esac
            ;;
        *) die_usage "SOURCE must be s3://bucket/prefix, file:///path or /path, not '$SOURCE'" ;;
    esac
    LOCAL_ROOT=${LOCAL_ROOT%/}
}

aws_s3() {
    local ep=()
    [[ -n ${S3_ENDPOINT_URL:-} ]] && ep=(--endpoint-url "$S3_ENDPOINT_URL")
    aws "${ep[@]}" s3 "$@"
}

# rclone addresses s3://bucket/prefix as the on-the-fly remote :s3:bucket/prefix; its
# settings come from RCLONE_S3_* variables (defaults below: credentials from the environment).
# (rclone 1.60 refuses to start when AWS_CA_BUNDLE is set: "LoadCustomCABundleError"; use
# RCLONE_CA_CERT instead.)
rclone_s3() {
    RCLONE_S3_PROVIDER=${RCLONE_S3_PROVIDER:-Other} \
        RCLONE_S3_ENV_AUTH=${RCLONE_S3_ENV_AUTH:-true} \
        RCLONE_S3_ENDPOINT=${RCLONE_S3_ENDPOINT:-${S3_ENDPOINT_URL:-}} \
        rclone --config /dev/null "$@"
}
rclone_path() { printf ':s3:%s' "${S3_URL#s3://}${1:+/$1}"; }

# Prints the version LATEST names.
fetch_latest() {
    case $SCHEME/${S3_TOOL:-} in
        file/*) cat -- "$LOCAL_ROOT/LATEST" ;;
        s3/aws) aws_s3 cp --only-show-errors "$S3_URL/LATEST" - ;;
        s3/rclone) rclone_s3 cat "$(rclone_path LATEST)" ;;
    esac
}

# Copies release $1 into the empty directory $2.
fetch_release() {
    case $SCHEME/${S3_TOOL:-} in
        file/*)
            [[ -d $LOCAL_ROOT/releases/$1 ]] || { log "no release $1 in $SOURCE"; return 1; }
            cp -R -- "$LOCAL_ROOT/releases/$1/." "$2/"
            ;;
        s3/aws) aws_s3 sync --only-show-errors --no-progress "$S3_URL/releases/$1/" "$2/" ;;
        s3/rclone) rclone_s3 copy "$(rclone_path "releases/$1")" "$2" ;;
    esac
}

# Uploads directory $1 (with its SHA256SUMS) as release $2, then points LATEST at it.
put_release() {
    local dir=$1 v=$2 tmp
    case $SCHEME/${S3_TOOL:-} in
        file/*)
            mkdir -p -- "$LOCAL_ROOT/releases"
            [[ ! -e $LOCAL_ROOT/releases/$v ]] || { log "release $v exists already in $SOURCE; releases are immutable"; return 1; }
            tmp="$LOCAL_ROOT/releases/.incoming-$v-$$"
            mkdir -- "$tmp"
            cp -R -- "$dir/." "$tmp/"
            mv -T -- "$tmp" "$LOCAL_ROOT/releases/$v"
            printf '%s\n' "$v" >"$LOCAL_ROOT/.LATEST.$$"
            mv -T -- "$LOCAL_ROOT/.LATEST.$$" "$LOCAL_ROOT/LATEST"
            ;;
        s3/aws)
            if aws_s3 ls "$S3_URL/releases/$v/SHA256SUMS" >/dev/null 2>&1; then
                log "release $v exists already in $SOURCE; releases are immutable"
                return 1
            fi
            # The manifest goes last: a release is complete once it has one.
            aws_s3 sync --only-show-errors --no-progress --exclude SHA256SUMS "$dir/" "$S3_URL/releases/$v/"
            aws_s3 cp --only-show-errors "$dir/SHA256SUMS" "$S3_URL/releases/$v/SHA256SUMS"
            printf '%s\n' "$v" | aws_s3 cp --only-show-errors - "$S3_URL/LATEST"
            ;;
        s3/rclone)
            # Listing a missing "directory" of a bucket succeeds with nothing: look for the file.
            if rclone_s3 lsf --files-only "$(rclone_path "releases/$v")" 2>/dev/null | grep -qx SHA256SUMS; then
                log "release $v exists already in $SOURCE; releases are immutable"
                return 1
            fi
            rclone_s3 copy --exclude SHA256SUMS "$dir" "$(rclone_path "releases/$v")"
            rclone_s3 copyto "$dir/SHA256SUMS" "$(rclone_path "releases/$v/SHA256SUMS")"
            printf '%s\n' "$v" | rclone_s3 rcat "$(rclone_path LATEST)"
            ;;
    esac
}

# ---- Verification -------------------------------------------------------------------------

regiongate_bin() {
    local b=${REGIONGATE_BIN:-regiongate}
    if [[ $b == */* ]]; then [[ -x $b ]] && printf '%s' "$b"; else command -v "$b" 2>/dev/null; fi
}

# regiongate validate DIR, as VALIDATE says.
validate_dir() {
    local dir=$1 bin
    case $VALIDATE in
        never) return 0 ;;
        auto | always) ;;
        *) die_usage "VALIDATE must be auto, always or never, not '$VALIDATE'" ;;
    esac
    if ! bin=$(regiongate_bin); then
        if [[ $VALIDATE == always ]]; then
            log "VALIDATE=always but no regiongate binary (REGIONGATE_BIN=${REGIONGATE_BIN:-regiongate})"
            return 1
        fi
        log "warning: no regiongate binary found; releases are checked against SHA256SUMS only"
        return 0
    fi
    local out
    if ! out=$("$bin" validate "$dir" 2>&1); then
        log "regiongate validate refused $dir:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        return 1
    fi
    # "ok: {...,"version":"<16 hex>",...}": what X-Regiongate-Version will say.
    DATA_VERSION=$(printf '%s\n' "$out" | sed -n 's/.*"version":"\([0-9a-f]*\)".*/\1/p' | head -n 1)
}

# Files in a release, relative, sorted, without the manifest.
release_files() { (cd -- "$1" && find . -type f ! -path ./SHA256SUMS -printf '%P\n' | LC_ALL=C sort); }

# Writes $1/SHA256SUMS over every regular file of $1.
write_manifest() {
    local dir=$1 sums
    sums=$(cd -- "$dir" && find . -type f ! -path ./SHA256SUMS -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 -r sha256sum --)
    printf '%s\n' "$sums" >"$dir/SHA256SUMS"
}

# Checks release directory $1: no links or special files, the manifest covers exactly the
# files present and every sum matches, then regiongate validate.
verify_release() {
    local dir=$1 odd listed present
    odd=$(cd -- "$dir" && find . ! -type f ! -type d -printf '%P\n' | head -n 5)
    if [[ -n $odd ]]; then
        log "release holds symbolic links or special files (refused): ${odd//$'\n'/, }"
        return 1
    fi
    if [[ ! -f $dir/SHA256SUMS ]]; then
        log "release has no SHA256SUMS manifest (refused)"
        return 1
    fi
    # Entries are "<64 hex><space><space or *><relative path>"; nothing may escape the release.
    if grep -Ev '^[0-9a-f]{64} [ *][^/]' "$dir/SHA256SUMS" | grep -q . ||
        grep -Eq '(^|/)\.\.(/|$)' <(sed -E 's/^[0-9a-f]{64} [ *]//' "$dir/SHA256SUMS"); then
        log "SHA256SUMS has malformed or escaping entries (refused)"
        return 1
    fi
    listed=$(sed -E 's/^[0-9a-f]{64} [ *]//' "$dir/SHA256SUMS" | LC_ALL=C sort)
    present=$(release_files "$dir")
    if [[ $listed != "$present" ]]; then
        log "SHA256SUMS does not list exactly the files of the release (refused):"
        diff <(printf '%s\n' "$listed") <(printf '%s\n' "$present") | sed 's/^/    /' >&2 || true
        return 1
    fi
    if ! (cd -- "$dir" && sha256sum --check --strict --quiet SHA256SUMS) >&2; then
        log "checksum mismatch (refused)"
        return 1
    fi
    validate_dir "$dir"
}

# ---- The swap -----------------------------------------------------------------------------

# The version now in service ("" if none).
served_version() {
    local t
    t=$(readlink -- "$DEST/current" 2>/dev/null) || return 0
    printf '%s' "${t##*/}"
}

swap_to() {
    local v=$1
    # The atomic step: a new link under a temporary name, renamed over the old one (rename(2)
    # replaces it in one step; readers see the old release or the new one, never neither).
    ln -sfn -- "releases/$v" "$DEST/.current.new"
    mv -T -- "$DEST/.current.new" "$DEST/current"
    # Most recently served first, for pruning.
    touch -- "$DEST/releases/$v"
}

# Removes releases beyond KEEP, least recently served first; never the one in service.
prune() {
    local served=$1 n=0 v
    # Names are plain (valid_version is checked on each), so ls output is safe to split here.
    # shellcheck disable=SC2045
    for v in $(ls -1t -- "$DEST/releases"); do
        valid_version "$v" || continue
        if [[ $v == "$served" ]]; then continue; fi
        n=$((n + 1))
        if ((n >= KEEP)); then
            log "pruning release $v"
            chmod -R u+w -- "$DEST/releases/$v"
            rm -rf -- "${DEST:?}/releases/$v"
        fi
    done
}

# Writes the outcome: the wanted version, the served one and its data version (the value of
# X-Regiongate-Version and regiongate_data_version_info once regiongate has reloaded; known
# when the release was validated). $4: the served data version after a swap; without it, the
# served release did not change and neither did its data version.
write_status() {
    local result=$1 wanted=$2 message=$3 f=${STATUS_FILE:-$DEST/sync-status} served dv=""
    served=$(served_version)
    if [[ $# -ge 4 ]]; then
        dv=$4
    elif [[ -f $f ]] && grep -qx "served=$served" "$f"; then
        dv=$(sed -n 's/^data_version=//p' "$f")
    fi
    printf 'result=%s\nwanted=%s\nserved=%s\ndata_version=%s\ntime=%s\nmessage=%s\n' \
        "$result" "$wanted" "$served" "$dv" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$message" >"$f.tmp" &&
        mv -T -- "$f.tmp" "$f"
}

# One pass. Returns 0 when the wanted version is in service.
sync_once() {
    local want served staging
    if [[ -n ${VERSION:-} ]]; then
        want=$VERSION
    elif ! want=$(fetch_latest | head -n 1 | tr -d '[:space:]'); then
        log "cannot read LATEST from $SOURCE"
        write_status failed "" "cannot read LATEST"
        return 1
    fi
    if [[ -z $want ]]; then
        log "LATEST in $SOURCE is missing or empty"
        write_status failed "" "LATEST missing or empty"
        return 1
    fi
    if ! valid_version "$want"; then
        log "bad version name '$want' (allowed: letters, digits, . _ -; not starting with .)"
        write_status failed "$want" "bad version name"
        return 1
    fi
    mkdir -p -- "$DEST/releases"
    served=$(served_version)
    if [[ $want == "$served" ]]; then
        write_status ok "$want" "already serving"
        return 0
    fi
    if [[ -d $DEST/releases/$want ]]; then
        log "release $want is here already; checking it again"
        if ! verify_release "$DEST/releases/$want"; then
            write_status failed "$want" "local copy failed verification"
            return 1
        fi
    else
        # Stale downloads of killed runs (the lock makes ours the only pass running).
        rm -rf -- "$DEST"/releases/.incoming-*
        staging="$DEST/releases/.incoming-$want-$$"
        mkdir -- "$staging"
        log "downloading release $want from $SOURCE"
        if ! fetch_release "$want" "$staging"; then
            log "download of $want failed"
            rm -rf -- "$staging"
            write_status failed "$want" "download failed"
            return 1
        fi
        if ! verify_release "$staging"; then
            rm -rf -- "$staging"
            write_status failed "$want" "verification failed"
            return 1
        fi
        chmod -R a-w -- "$staging"
        chmod u+w -- "$staging" # the directory itself stays renamable and prunable
        mv -T -- "$staging" "$DEST/releases/$want"
        chmod a-w -- "$DEST/releases/$want"
    fi
    swap_to "$want"
    log "serving release $want, data version ${DATA_VERSION:-unknown} (was: ${served:-none})"
    prune "$want"
    if [[ -n ${RELOAD_CMD:-} ]] && ! bash -c "$RELOAD_CMD"; then
        log "RELOAD_CMD failed: $RELOAD_CMD"
        write_status failed "$want" "swapped, but RELOAD_CMD failed" "$DATA_VERSION"
        return 1
    fi
    write_status ok "$want" "swapped from ${served:-none}" "$DATA_VERSION"
}

with_lock() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DEST/.sync.lock"
        if ! flock -w 600 9; then
            log "another pass holds $DEST/.sync.lock"
            return 1
        fi
    fi
    "$@"
}

cmd_publish() {
    [[ $# -eq 2 ]] || die_usage "publish needs DIR and VERSION"
    local dir=$1 v=$2 stage rc=0
    valid_version "$v" || die_usage "bad version name '$v'"
    [[ -d $dir ]] || die_usage "$dir is not a directory"
    stage=$(mktemp -d)
    # A private copy: the manifest is computed over exactly what is uploaded.
    cp -R -- "$dir/." "$stage/"
    rm -f -- "$stage/SHA256SUMS"
    write_manifest "$stage"
    if verify_release "$stage"; then
        put_release "$stage" "$v" || rc=1
    else
        log "not publishing $v"
        rc=1
    fi
    rm -rf -- "$stage"
    [[ $rc -eq 0 ]] && log "published $v to $SOURCE; LATEST = $v"
    return "$rc"
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    [[ $KEEP =~ ^[1-9][0-9]*$ ]] || die_usage "KEEP must be a positive number"
    [[ $INTERVAL =~ ^[1-9][0-9]*$ ]] || die_usage "INTERVAL must be a positive number of seconds"
    case $cmd in
        sync | loop)
            [[ $# -eq 0 ]] || die_usage "$cmd takes no arguments"
            parse_source
            [[ -n ${DEST:-} ]] || die_usage "DEST is not set"
            DEST=${DEST%/}
            mkdir -p -- "$DEST"
            if [[ $cmd == sync ]]; then
                with_lock sync_once
            else
                local sleeper=""
                trap 'log "stopping"; [[ -n $sleeper ]] && kill "$sleeper" 2>/dev/null; exit 0' TERM INT
                while true; do
                    # Each pass in its own bash, so that `set -e` holds inside it.
                    if ! "${BASH:-bash}" "$0" sync; then
                        log "pass failed; still serving '$(served_version)'; next try in ${INTERVAL}s"
                    fi
                    sleep "$INTERVAL" &
                    sleeper=$!
                    wait "$sleeper" || true
                    sleeper=""
                done
            fi
            ;;
        publish)
            parse_source
            cmd_publish "$@"
            ;;
        -h | --help | help) sed -n '2,/^$/p' "$0" ;;
        *) die_usage "unknown command '${cmd}'" ;;
    esac
}

main "$@"
