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

# The live master pids from the instances' own pid files too, in case an instance was restarted
# after up.sh recorded its pid.
PF_PIDS="$PF_PID"
if [ -n "$PF_DIR" ] && [ -f "$PF_DIR/main.cf" ]; then
    q=$(postconf -c "$PF_DIR" -h queue_directory 2>/dev/null || true)
    live=$(tr -d ' \n' < "$q/pid/master.pid" 2>/dev/null || true)
    [ -n "$live" ] && [ "$live" != "$PF_PID" ] && PF_PIDS="$PF_PIDS $live"
fi
for c in $DOVECOT_CONFIGS; do
    [ -f "$c" ] || continue
    b=$(doveconf -c "$c" -h base_dir 2>/dev/null || true)
    live=$(cat "$b/master.pid" 2>/dev/null || true)
    case " $DOVECOT_PIDS " in *" $live "*) ;; *) DOVECOT_PIDS="$DOVECOT_PIDS $live" ;; esac
done

# SIGTERM to every recorded master at once (postfix master and dovecot master stop their own
# children; SIGTERM to the postfix master is what `postfix stop` does), then wait for all.
targets=()
for p in $PF_PIDS; do targets+=("$p:postfix"); done
for p in $DOVECOT_PIDS; do targets+=("$p:dovecot"); done
[ -n "$IDP_PID" ] && targets+=("$IDP_PID:idp")
sent=()
for t in "${targets[@]}"; do
    p="${t%%:*}"; name="${t#*:}"
    alive "$p" || continue
    if ! is_ours "$p" "$name"; then
        log "pid $p no longer runs $name; leaving it alone"
        continue
    fi
    kill -TERM "$p" 2>/dev/null && sent+=("$p:$name")
done
for t in "${sent[@]}"; do
    p="${t%%:*}"; name="${t#*:}"
    if ! wait_gone "$p" 15; then
        log "$name (pid $p) did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
        wait_gone "$p" 2 || log "$name (pid $p) is still alive"
    fi
done

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
