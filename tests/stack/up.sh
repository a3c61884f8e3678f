#!/usr/bin/env bash
# Start the local mail stack that imitates Exchange Online for mailoauth's tests:
#   test IdP (tests/stack/idp) + Dovecot 2.3 (IMAP/POP3/LMTP, two instances) + Postfix 3.7.
# Everything (config, certs, logs, sockets, queues, maildirs) lives in one fresh state dir.
# Writes ${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json} and <state>/stack.env.
# Stop with tests/stack/down.sh. See tests/stack/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONF="$HERE/conf"
STACK_FILE="${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json}"
T0=$(date +%s.%N)

# ---- ports and addresses (env-overridable) ---------------------------------------------
IDP_HOST=127.0.0.1
MAIL_HOST="${MAILOAUTH_MAIL_HOST:-127.0.0.2}"
IDP_HTTP_PORT="${MAILOAUTH_IDP_HTTP_PORT:-10088}"
IDP_HTTPS_PORT="${MAILOAUTH_IDP_HTTPS_PORT:-10443}"
IMAP_PORT="${MAILOAUTH_IMAP_PORT:-10143}"
IMAPS_PORT="${MAILOAUTH_IMAPS_PORT:-10993}"
POP3_PORT="${MAILOAUTH_POP3_PORT:-10110}"
POP3S_PORT="${MAILOAUTH_POP3S_PORT:-10995}"
SMTP_PORT="${MAILOAUTH_SMTP_PORT:-10587}"
SMTPS_PORT="${MAILOAUTH_SMTPS_PORT:-10465}"
OB_IMAP_PORT="${MAILOAUTH_OB_IMAP_PORT:-11143}"
OB_IMAPS_PORT="${MAILOAUTH_OB_IMAPS_PORT:-11993}"
OB_POP3_PORT="${MAILOAUTH_OB_POP3_PORT:-11110}"
OB_POP3S_PORT="${MAILOAUTH_OB_POP3S_PORT:-11995}"
OB_SMTP_PORT="${MAILOAUTH_OB_SMTP_PORT:-11587}"
OB_SMTPS_PORT="${MAILOAUTH_OB_SMTPS_PORT:-11465}"
# Browsers refuse to open some ports (Chromium's kRestrictedPorts, e.g. 10080 since Chrome 90:
# ERR_UNSAFE_PORT, a blank page). The sign-in page must open in a real browser, so refuse them here.
for p in "$IDP_HTTP_PORT" "$IDP_HTTPS_PORT"; do
  case " 1 7 9 11 13 15 17 19 20 21 22 23 25 37 42 43 53 69 77 79 87 95 101 102 103 104 109 110 111 113 115 117 119 123 135 137 139 143 161 179 389 427 465 512 513 514 515 526 530 531 532 540 548 554 556 563 587 601 636 989 990 993 995 1719 1720 1723 2049 3659 4045 4190 5060 5061 6000 6566 6665 6666 6667 6668 6669 6697 10080 " in
    *" $p "*) echo "up.sh: port $p is one browsers refuse to open (ERR_UNSAFE_PORT); choose another IdP port" >&2; exit 1 ;;
  esac
done
AUTH_DEBUG="${MAILOAUTH_STACK_AUTH_DEBUG:-no}"
# introspect (default): Dovecot validates every login by POST /introspect.
# grant (opt-in): Dovecot's password-grant hook, which also sends the SASL user (shared mailboxes);
#   needs the IdP to implement MAILOAUTH_IDP_GRANT_PATH. See conf/oauth2-grant.conf.ext.in.
AUTH_MODE="${MAILOAUTH_STACK_AUTH_MODE:-introspect}"
GRANT_PATH="${MAILOAUTH_IDP_GRANT_PATH:-/dovecot/grant}"
case "$AUTH_MODE" in introspect|grant) ;; *) echo "up.sh: MAILOAUTH_STACK_AUTH_MODE must be introspect or grant" >&2; exit 1 ;; esac

TENANT="72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID="00000000-0000-0000-0000-0000000000a1"
CONF_CLIENT_ID="00000000-0000-0000-0000-0000000000a2"
CLIENT_SECRET="idp-test-secret-a2-0123456789"

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PATH="$PATH:/usr/sbin:/sbin:${HOME:-/root}/.cargo/bin"

# ---- refuse to start over a running stack; clean up a stale one ------------------------
pid_alive() { [ -n "${1:-}" ] && [ "$1" -gt 0 ] 2>/dev/null && kill -0 "$1" 2>/dev/null; }
if [ -e "$STACK_FILE" ]; then
    alive=""
    for p in $(python3 - "$STACK_FILE" <<'EOF' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
pids = [d.get("idp", {}).get("pid"), d.get("postfix", {}).get("pid")] + list(d.get("dovecot", {}).get("pids", []))
print(" ".join(str(p) for p in pids if isinstance(p, int) and p > 0))
EOF
    ); do
        if pid_alive "$p"; then alive="$alive $p"; fi
    done
    if [ -n "$alive" ]; then
        die "a stack is already running (pids:$alive, $STACK_FILE). Run tests/stack/down.sh first."
    fi
    log "removing stale stack file $STACK_FILE (its processes are gone)"
    stale_dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("state_dir",""))' "$STACK_FILE" 2>/dev/null || true)
    case "$stale_dir" in
        /tmp/mailoauth-stack.*) [ -d "$stale_dir" ] && rm -rf -- "$stale_dir" ;;
    esac
    rm -f -- "$STACK_FILE"
fi

# Is anything already listening on one of our ports?
ALL_PORTS="$IDP_HOST:$IDP_HTTP_PORT $IDP_HOST:$IDP_HTTPS_PORT"
for p in $IMAP_PORT $IMAPS_PORT $POP3_PORT $POP3S_PORT $SMTP_PORT $SMTPS_PORT \
         $OB_IMAP_PORT $OB_IMAPS_PORT $OB_POP3_PORT $OB_POP3S_PORT $OB_SMTP_PORT $OB_SMTPS_PORT; do
    ALL_PORTS="$ALL_PORTS $MAIL_HOST:$p"
done
busy=$(python3 - $ALL_PORTS <<'EOF'
import socket, sys
busy = []
for hp in sys.argv[1:]:
    h, p = hp.rsplit(":", 1)
    s = socket.socket(); s.settimeout(0.2)
    try:
        s.connect((h, int(p))); busy.append(hp)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(busy))
EOF
)
[ -z "$busy" ] || die "ports already in use: $busy (another stack? set MAILOAUTH_*_PORT to move)"

# ---- install what is missing ------------------------------------------------------------
need_pkgs=()
[ -x /usr/sbin/dovecot ] || need_pkgs+=(dovecot-core)
[ -x /usr/lib/dovecot/imap ] || need_pkgs+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3 ] || need_pkgs+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/lmtp ] || need_pkgs+=(dovecot-lmtpd)
[ -x /usr/sbin/postfix ] || need_pkgs+=(postfix)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("pytest") is None)' >/dev/null 2>&1 \
    || need_pkgs+=(python3-pytest)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages ${need_pkgs[*]} and not root"
    log "installing ${need_pkgs[*]}"
    # Keep apt from starting the system-wide daemons (they would listen on 0.0.0.0:25/143/993...).
    policy_created=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    echo "postfix postfix/mailname string mail.contoso.test" | debconf-set-selections 2>/dev/null || true
    rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need_pkgs[@]}"; } >&2 || rc=$?
    [ -n "$policy_created" ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get install ${need_pkgs[*]} failed"
fi
id mail >/dev/null 2>&1 || die "system user 'mail' is missing"
id postfix >/dev/null 2>&1 || die "system user 'postfix' is missing (postfix package broken?)"
id dovenull >/dev/null 2>&1 || die "system user 'dovenull' is missing (dovecot-core broken?)"
getent group postdrop >/dev/null 2>&1 || die "group 'postdrop' is missing (postfix package broken?)"

# ---- the identity service -----------------------------------------------------------------
if [ -n "${MAILOAUTH_IDP_BIN:-}" ]; then
    IDP_BIN="$MAILOAUTH_IDP_BIN"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to build mailoauth-test-idp)"
    # --workspace, not -p: one feature unification for every build of the project, so the
    # library's and the imitation's shared dependencies are compiled once, not once per selection.
    log "building mailoauth-test-idp (cargo build --workspace)"
    (cd "$ROOT" && cargo build -q --workspace) || die "cargo build --workspace failed"
    tdir="${CARGO_TARGET_DIR:-$ROOT/target}"
    case "$tdir" in /*) ;; *) tdir="$ROOT/$tdir" ;; esac
    IDP_BIN="$tdir/debug/mailoauth-test-idp"
fi
[ -x "$IDP_BIN" ] || die "IdP binary not found or not executable: $IDP_BIN"

# ---- state dir ------------------------------------------------------------------------------
STATE="$(mktemp -d /tmp/mailoauth-stack.XXXXXX)"
chmod 755 "$STATE"   # Dovecot/Postfix users must traverse it
LOG_DIR="$STATE/logs"; DOVECOT_DIR="$STATE/dovecot"; PF_DIR="$STATE/postfix/etc"; PF_VAR="$STATE/postfix"
MAIL_ROOT="$STATE/mail"; IDP_DIR="$STATE/idp"; TLS_DIR="$STATE/tls"
mkdir -p "$LOG_DIR" "$PF_VAR" "$DOVECOT_DIR/xoauth2" "$DOVECOT_DIR/oauthbearer" "$PF_DIR" "$MAIL_ROOT" "$IDP_DIR" "$TLS_DIR"
chmod 755 "$LOG_DIR" "$DOVECOT_DIR" "$DOVECOT_DIR"/* "$PF_VAR" "$PF_DIR" "$IDP_DIR"
chmod 700 "$TLS_DIR"
chown mail:mail "$MAIL_ROOT"; chmod 770 "$MAIL_ROOT"

STARTED_IDP=""; STARTED_DOVECOT=""; STARTED_POSTFIX=""
fail_cleanup() {
    rc=$?
    [ "$rc" = 0 ] && return
    log "start-up failed; stopping what was started"
    for f in "$LOG_DIR"/*.log; do
        [ -s "$f" ] && { echo "---- tail $f" >&2; tail -n 15 "$f" >&2; }
    done
    [ -n "$STARTED_POSTFIX" ] && postfix -c "$PF_DIR" stop >/dev/null 2>&1 || true
    for inst in $STARTED_DOVECOT; do
        p=$(cat "$DOVECOT_DIR/$inst/run/master.pid" 2>/dev/null || true)
        pid_alive "$p" && kill "$p" 2>/dev/null || true
    done
    pid_alive "$STARTED_IDP" && kill "$STARTED_IDP" 2>/dev/null || true
    sleep 0.3
    if [ "${MAILOAUTH_STACK_KEEP:-0}" = 1 ]; then
        log "state kept in $STATE"
    else
        rm -rf -- "$STATE"
    fi
}
trap fail_cleanup EXIT

# ---- certificates (a fresh CA and server certificate per run) -------------------------------
(
    cd "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -sha256 \
        -keyout ca.key -out ca.pem -subj "/CN=mailoauth test stack CA $(basename "$STATE")" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >/dev/null 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -keyout server.key -out server.csr \
        -subj "/CN=localhost" >/dev/null 2>&1
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:::1$([[ "$MAIL_HOST" == 127.0.0.[12] ]] || echo ",IP:$MAIL_HOST")" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile server.ext -out server.pem >/dev/null 2>&1
    rm -f server.csr server.ext ca.srl
) || die "openssl certificate generation failed"
CA_FILE="$STATE/ca.pem"
cp "$TLS_DIR/ca.pem" "$CA_FILE"; chmod 644 "$CA_FILE"
CERT_FILE="$TLS_DIR/server.pem"; KEY_FILE="$TLS_DIR/server.key"
chmod 644 "$CERT_FILE"; chmod 600 "$KEY_FILE" "$TLS_DIR/ca.key"

# ---- start the IdP --------------------------------------------------------------------------
IDP_LOG="$LOG_DIR/idp.log"
IDP_PORTS="$IDP_DIR/ports.json"
idp_args=(--bind "$IDP_HOST" --http-port "$IDP_HTTP_PORT" --https-port "$IDP_HTTPS_PORT"
          --tls-cert "$CERT_FILE" --tls-key "$KEY_FILE" --ports-file "$IDP_PORTS" --log-file "$IDP_LOG")
[ -n "${MAILOAUTH_IDP_CONFIG:-}" ] && idp_args+=(--config "$MAILOAUTH_IDP_CONFIG")
setsid "$IDP_BIN" "${idp_args[@]}" </dev/null >"$LOG_DIR/idp.stdout.log" 2>&1 &
STARTED_IDP=$!

# ---- render configuration -------------------------------------------------------------------
render() {  # render TEMPLATE OUTPUT: replaces @NAME@ with $NAME from the environment
    python3 - "$1" "$2" <<'EOF'
import os, re, sys
src = open(sys.argv[1]).read()
def sub(m):
    v = os.environ.get("STK_" + m.group(1))
    if v is None:
        sys.exit("render %s: no value for @%s@" % (sys.argv[1], m.group(1)))
    return v
open(sys.argv[2], "w").write(re.sub(r"@([A-Z0-9_]+)@", sub, src))
EOF
}
export STK_STATE_DIR="$STATE" STK_LOG_DIR="$LOG_DIR" STK_MAIL_HOST="$MAIL_HOST" STK_MAIL_ROOT="$MAIL_ROOT"
export STK_CERT_FILE="$CERT_FILE" STK_KEY_FILE="$KEY_FILE" STK_AUTH_DEBUG="$AUTH_DEBUG"
export STK_IDP_HTTP="http://$IDP_HOST:$IDP_HTTP_PORT"
export STK_OAUTH2_CONF="$DOVECOT_DIR/oauth2.conf.ext"
export STK_GRANT_PATH="$GRANT_PATH"
if [ "$AUTH_MODE" = grant ]; then
    render "$CONF/oauth2-grant.conf.ext.in" "$STK_OAUTH2_CONF"
else
    render "$CONF/oauth2.conf.ext.in" "$STK_OAUTH2_CONF"
fi
export STK_STATE_ID="${STATE##*.}"

dovecot_conf() {  # instance mechs protocols imap imaps pop3 pop3s
    export STK_INSTANCE="$1" STK_AUTH_MECHS="$2" STK_PROTOCOLS="$3"
    export STK_IMAP_PORT="$4" STK_IMAPS_PORT="$5" STK_POP3_PORT="$6" STK_POP3S_PORT="$7"
    export STK_DOVECOT_DIR="$DOVECOT_DIR/$1"
    render "$CONF/dovecot.conf.in" "$DOVECOT_DIR/$1.conf"
}
dovecot_conf xoauth2 xoauth2 "imap pop3 lmtp" "$IMAP_PORT" "$IMAPS_PORT" "$POP3_PORT" "$POP3S_PORT"
dovecot_conf oauthbearer oauthbearer "imap pop3" "$OB_IMAP_PORT" "$OB_IMAPS_PORT" "$OB_POP3_PORT" "$OB_POP3S_PORT"

export STK_PF_DIR="$PF_DIR" STK_PF_VAR="$PF_VAR" STK_LMTP_SOCKET="$DOVECOT_DIR/xoauth2/run/lmtp"
export STK_SASL_XOAUTH2="$DOVECOT_DIR/xoauth2/run/auth-postfix"
export STK_SASL_OAUTHBEARER="$DOVECOT_DIR/oauthbearer/run/auth-postfix"
export STK_SMTP_PORT="$SMTP_PORT" STK_SMTPS_PORT="$SMTPS_PORT"
export STK_OB_SMTP_PORT="$OB_SMTP_PORT" STK_OB_SMTPS_PORT="$OB_SMTPS_PORT"
render "$CONF/main.cf.in" "$PF_DIR/main.cf"
render "$CONF/master.cf.in" "$PF_DIR/master.cf"
mkdir -p "$PF_VAR/queue" "$PF_VAR/data"
chown postfix "$PF_VAR/data"
: > "$LOG_DIR/postfix.log"

# ---- start Dovecot (two instances) and Postfix -----------------------------------------------
for inst in xoauth2 oauthbearer; do
    # (stdio to a file: the daemon must not keep the caller's stdout/stderr pipe open)
    dovecot -c "$DOVECOT_DIR/$inst.conf" </dev/null >>"$LOG_DIR/dovecot-start.log" 2>&1 || die "dovecot ($inst) failed to start; see $LOG_DIR/dovecot-$inst.log"
    STARTED_DOVECOT="$STARTED_DOVECOT $inst"
done
# `postfix start` spends about 2.5 s in postfix-script's sanity checks; with the queue directories
# made here (as postfix-files has them) master(8) itself starts in milliseconds. If that fails,
# fall back to `postfix start`, whose checks say what is wrong.
(
    cd "$PF_VAR/queue"
    for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
        install -d -o postfix -g root -m 700 "$d"
    done
    install -d -o postfix -g postdrop -m 730 maildrop
    install -d -o postfix -g postdrop -m 710 public
    install -d -o root -g root -m 755 pid
)
if ! MAIL_CONFIG="$PF_DIR" /usr/lib/postfix/sbin/master -c "$PF_DIR" -w </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1; then
    log "postfix master -w failed; trying 'postfix -c $PF_DIR start'"
    if ! postfix -c "$PF_DIR" start </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1; then
        # postfix(1) prints its fatal errors only to a terminal (no syslog here): ask again under script(1).
        script -qec "postfix -c '$PF_DIR' check" /dev/null </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1 || true
        die "postfix start failed: $(tail -n 5 "$LOG_DIR/postfix-start.log")"
    fi
fi
STARTED_POSTFIX=1

# ---- wait until everything answers -------------------------------------------------------------
python3 - "$IDP_PORTS" "$IDP_HOST" "$IDP_HTTP_PORT" "$STARTED_IDP" "${MAILOAUTH_STACK_START_TIMEOUT:-60}" \
    "$MAIL_HOST" $IMAP_PORT $IMAPS_PORT $POP3_PORT $POP3S_PORT $SMTP_PORT $SMTPS_PORT \
    $OB_IMAP_PORT $OB_IMAPS_PORT $OB_POP3_PORT $OB_POP3S_PORT $OB_SMTP_PORT $OB_SMTPS_PORT <<'EOF' || die "the stack did not come up"
import os, socket, sys, time, urllib.request
ports_file, idp_host, idp_http, idp_pid, timeout, mail_host = sys.argv[1:7]
mail_ports = [int(p) for p in sys.argv[7:]]
deadline = time.time() + float(timeout)
def alive(pid):
    try:
        os.kill(int(pid), 0); return True
    except OSError:
        return False
while not os.path.exists(ports_file):
    if not alive(idp_pid):
        sys.exit("the IdP exited during start-up")
    if time.time() > deadline:
        sys.exit("the IdP did not write its ports file %s" % ports_file)
    time.sleep(0.02)
while True:
    try:
        with urllib.request.urlopen("http://%s:%s/health" % (idp_host, idp_http), timeout=2) as r:
            if r.status == 200:
                break
    except Exception as e:
        last = e
    if time.time() > deadline:
        sys.exit("IdP /health did not answer 200: %s" % last)
    time.sleep(0.02)
pending = set(mail_ports)
while pending:
    for p in sorted(pending):
        s = socket.socket(); s.settimeout(1)
        try:
            s.connect((mail_host, p)); pending.discard(p)
        except OSError:
            pass
        finally:
            s.close()
    if pending:
        if time.time() > deadline:
            sys.exit("ports not answering on %s: %s" % (mail_host, sorted(pending)))
        time.sleep(0.05)
EOF
# The IdP answered; which ports did it really take?
read -r IDP_HTTP_PORT IDP_HTTPS_PORT < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["http"], d["https"])' "$IDP_PORTS")

DOVECOT_PIDS=""
for inst in xoauth2 oauthbearer; do
    p=$(cat "$DOVECOT_DIR/$inst/run/master.pid" 2>/dev/null) || die "no master.pid for dovecot ($inst)"
    DOVECOT_PIDS="$DOVECOT_PIDS $p"
done
POSTFIX_PID=$(tr -d ' \n' < "$PF_VAR/queue/pid/master.pid" 2>/dev/null) || die "no postfix master.pid"

# ---- describe the stack ---------------------------------------------------------------------
export S_STATE="$STATE" S_CA="$CA_FILE" S_IDP_HOST="$IDP_HOST" S_IDP_HTTP="$IDP_HTTP_PORT" S_IDP_HTTPS="$IDP_HTTPS_PORT"
export S_TENANT="$TENANT" S_CLIENT_ID="$CLIENT_ID" S_CONF_CLIENT_ID="$CONF_CLIENT_ID" S_CLIENT_SECRET="$CLIENT_SECRET"
export S_IDP_PID="$STARTED_IDP" S_IDP_LOG="$IDP_LOG" S_MAIL_HOST="$MAIL_HOST"
export S_PORTS="$IMAP_PORT $IMAPS_PORT $POP3_PORT $POP3S_PORT $SMTP_PORT $SMTPS_PORT $OB_IMAP_PORT $OB_IMAPS_PORT $OB_POP3_PORT $OB_POP3S_PORT $OB_SMTP_PORT $OB_SMTPS_PORT"
export S_MAIL_ROOT="$MAIL_ROOT" S_DOVECOT_PIDS="$DOVECOT_PIDS" S_DOVECOT_DIR="$DOVECOT_DIR" S_LOG_DIR="$LOG_DIR"
export S_PF_DIR="$PF_DIR" S_PF_PID="$POSTFIX_PID" S_STACK_FILE="$STACK_FILE" S_AUTH_MODE="$AUTH_MODE"
python3 - <<'EOF' || die "could not write the stack file"
import json, os, shlex
e = os.environ
p = [int(x) for x in e["S_PORTS"].split()]
host = e["S_MAIL_HOST"]
d = e["S_DOVECOT_DIR"]
stack = {
    "state_dir": e["S_STATE"],
    "ca_file": e["S_CA"],
    "idp": {
        "http": "http://%s:%s" % (e["S_IDP_HOST"], e["S_IDP_HTTP"]),
        "https": "https://%s:%s" % (e["S_IDP_HOST"], e["S_IDP_HTTPS"]),
        "tenant": e["S_TENANT"],
        "client_id": e["S_CLIENT_ID"],
        "confidential_client_id": e["S_CONF_CLIENT_ID"],
        "client_secret": e["S_CLIENT_SECRET"],
        "pid": int(e["S_IDP_PID"]),
        "log": e["S_IDP_LOG"],
    },
    "users": ["alice@contoso.test", "bob@contoso.test", "carol@contoso.test",
              "service@contoso.test", "shared@contoso.test"],
    "imap": {"host": host, "starttls": p[0], "tls": p[1]},
    "pop3": {"host": host, "starttls": p[2], "tls": p[3]},
    "smtp": {"host": host, "starttls": p[4], "tls": p[5]},
    "oauthbearer": {
        "imap": {"host": host, "starttls": p[6], "tls": p[7]},
        "pop3": {"host": host, "starttls": p[8], "tls": p[9]},
        "smtp": {"host": host, "starttls": p[10], "tls": p[11]},
    },
    "maildir": e["S_MAIL_ROOT"] + "/%d/%n/Maildir",
    "discard_domain": "discard.test",
    "dovecot": {
        "pids": [int(x) for x in e["S_DOVECOT_PIDS"].split()],
        "config": d + "/xoauth2.conf",
        "log": e["S_LOG_DIR"] + "/dovecot-xoauth2.log",
        "configs": [d + "/xoauth2.conf", d + "/oauthbearer.conf"],
        "logs": [e["S_LOG_DIR"] + "/dovecot-xoauth2.log", e["S_LOG_DIR"] + "/dovecot-oauthbearer.log"],
        "mail_user": "mail",
        "auth_mode": e["S_AUTH_MODE"],
    },
    "postfix": {"config_dir": e["S_PF_DIR"], "pid": int(e["S_PF_PID"]), "log": e["S_LOG_DIR"] + "/postfix.log"},
}
tmp = e["S_STACK_FILE"] + ".tmp"
with open(tmp, "w") as f:
    json.dump(stack, f, indent=2)
    f.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, e["S_STACK_FILE"])

env = {
    "MAILOAUTH_STACK_FILE": e["S_STACK_FILE"],
    "MAILOAUTH_STACK_DIR": e["S_STATE"],
    "MAILOAUTH_CA_FILE": e["S_CA"],
    "MAILOAUTH_IDP_HTTP": stack["idp"]["http"],
    "MAILOAUTH_IDP_HTTPS": stack["idp"]["https"],
    "MAILOAUTH_TENANT": e["S_TENANT"],
    "MAILOAUTH_CLIENT_ID": e["S_CLIENT_ID"],
    "MAILOAUTH_CONFIDENTIAL_CLIENT_ID": e["S_CONF_CLIENT_ID"],
    "MAILOAUTH_CLIENT_SECRET": e["S_CLIENT_SECRET"],
    "MAILOAUTH_MAIL_HOST": host,
    "MAILOAUTH_IMAP_PORT": p[0], "MAILOAUTH_IMAPS_PORT": p[1],
    "MAILOAUTH_POP3_PORT": p[2], "MAILOAUTH_POP3S_PORT": p[3],
    "MAILOAUTH_SMTP_PORT": p[4], "MAILOAUTH_SMTPS_PORT": p[5],
    "MAILOAUTH_OB_IMAP_PORT": p[6], "MAILOAUTH_OB_IMAPS_PORT": p[7],
    "MAILOAUTH_OB_POP3_PORT": p[8], "MAILOAUTH_OB_POP3S_PORT": p[9],
    "MAILOAUTH_OB_SMTP_PORT": p[10], "MAILOAUTH_OB_SMTPS_PORT": p[11],
    "MAILOAUTH_MAILDIR": stack["maildir"],
    "MAILOAUTH_DISCARD_DOMAIN": "discard.test",
}
with open(os.path.join(e["S_STATE"], "stack.env"), "w") as f:
    for k, v in env.items():
        f.write("export %s=%s\n" % (k, shlex.quote(str(v))))
EOF

trap - EXIT
T1=$(date +%s.%N)
cat <<EOF
mailoauth test stack is up in $(python3 -c "print('%.1f' % ($T1 - $T0))") s
  state dir : $STATE   (source $STATE/stack.env)
  stack file: $STACK_FILE
  CA        : $CA_FILE
  IdP       : http://$IDP_HOST:$IDP_HTTP_PORT  https://$IDP_HOST:$IDP_HTTPS_PORT  (pid $STARTED_IDP)
  XOAUTH2   : IMAP $MAIL_HOST:$IMAP_PORT (STARTTLS) / $IMAPS_PORT (TLS)   POP3 $POP3_PORT / $POP3S_PORT   SMTP $SMTP_PORT / $SMTPS_PORT
  OAUTHBEARER: IMAP $MAIL_HOST:$OB_IMAP_PORT / $OB_IMAPS_PORT   POP3 $OB_POP3_PORT / $OB_POP3S_PORT   SMTP $OB_SMTP_PORT / $OB_SMTPS_PORT
  maildirs  : $MAIL_ROOT/%d/%n/Maildir   (mail to @discard.test is discarded)
  stop with : $HERE/down.sh
EOF
