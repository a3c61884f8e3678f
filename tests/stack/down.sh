#!/usr/bin/env bash
# Stop the mail stack that tests/stack/up.sh started: exactly the processes recorded in
# ${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json}; then remove the state dir (unless
# MAILOAUTH_STACK_KEEP=1) and the stack file. Safe to call twice; never kills by name.
set -uo pipefail

STACK_FILE="${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json}"
export PATH="$PATH:/usr/sbin:/sbin"
log() { printf 'down.sh: %s\n' "$*" >&2; }

if [ ! -e "$STACK_FILE" ]; then
    log "no stack file $STACK_FILE: nothing to stop"
    exit 0
fi

# state_dir, idp pid, postfix dir + pid, dovecot configs + pids
eval "$(python3 - "$STACK_FILE" <<'EOF'
import json, shlex, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("log %s" % shlex.quote("unreadable stack file (%s); removing it" % e))
    d = {}
def q(v):
    return shlex.quote(str(v if v is not None else ""))
dv = d.get("dovecot", {})
print("STATE=%s" % q(d.get("state_dir")))
print("IDP_PID=%s" % q(d.get("idp", {}).get("pid")))
print("PF_DIR=%s" % q(d.get("postfix", {}).get("config_dir")))
print("PF_PID=%s" % q(d.get("postfix", {}).get("pid")))
print("DOVECOT_PIDS=%s" % q(" ".join(str(p) for p in dv.get("pids", []))))
print("DOVECOT_CONFIGS=%s" % q(" ".join(dv.get("configs") or ([dv["config"]] if dv.get("config") else []))))
EOF
)"

alive() { [ -n "${1:-}" ] && [ "$1" -gt 0 ] 2>/dev/null && kill -0 "$1" 2>/dev/null; }
# Only signal a pid if it still runs the program we started (pids can be reused).
is_ours() {  # pid expected-substring-of-exe-or-cmdline
    local exe cmd
    exe=$(readlink "/proc/$1/exe" 2>/dev/null || true)
    cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null || true)
    case "$exe $cmd" in *"$2"*) return 0 ;; esac
    return 1
}
wait_gone() {  # pid seconds
    local i=0 n=$(( $2 * 20 ))
    while alive "$1" && [ "$i" -lt "$n" ]; do sleep 0.05; i=$((i + 1)); done
    ! alive "$1"
}
stop_pid() {  # pid name match
    local pid="$1" name="$2" match="$3"
    alive "$pid" || return 0
    if ! is_ours "$pid" "$match"; then
        log "pid $pid no longer runs $name; leaving it alone"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 10; then
        log "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 2 || log "$name (pid $pid) is still alive"
    fi
}

# Postfix first (it delivers into Dovecot's LMTP socket).
if [ -n "$PF_DIR" ] && [ -f "$PF_DIR/main.cf" ] && alive "$PF_PID"; then
    postfix -c "$PF_DIR" stop >/dev/null 2>&1 || true
    wait_gone "$PF_PID" 10 || true
fi
stop_pid "$PF_PID" "postfix master" "postfix"

for p in $DOVECOT_PIDS; do
    stop_pid "$p" "dovecot" "dovecot"
done
stop_pid "$IDP_PID" "IdP" "idp"

if [ "${MAILOAUTH_STACK_KEEP:-0}" = 1 ]; then
    log "MAILOAUTH_STACK_KEEP=1: keeping $STATE"
elif [ -n "$STATE" ] && [ -d "$STATE" ]; then
    case "$STATE" in
        /tmp/mailoauth-stack.*) rm -rf -- "$STATE" ;;
        *) log "state dir $STATE is not under /tmp/mailoauth-stack.*; not removing it" ;;
    esac
fi
rm -f -- "$STACK_FILE"
log "stack stopped"
