#!/usr/bin/env bash
# examples/demo.sh: build libmailoauth and the example host (examples/demo_host.c), then run it.
#
# The demo runs against the local test stack (identity imitation, Dovecot, Postfix): when
# it is not up yet (tests/stack/up.sh writes /tmp/mailoauth-stack.json, or
# $MAILOAUTH_STACK_FILE), the demo starts it and stops it again at the end. The host gets a
# configuration for it: the test identity service's http:// URL, its tenant and client id,
# the stack's CA and its mail hosts and ports.
# Any other configuration: examples/demo.sh path/to/config.json (no stack is started).
#
# The demo signs alice@contoso.test in once for SMTP, IMAP and POP3, sends one mail from
# alice to bob@contoso.test (German umlauts in the subject), then polls alice's inbox over
# IMAP and over POP3, forwards each new enquiry to bob and acknowledges it, and shows that
# the mail and the forwards arrived in bob's maildir on the stack. By default the test
# identity service approves at once and examples/auto_browser.py stands in for the browser;
# with --interactive the sign-in page waits for you to click "Accept" in your own browser
# (the library opens it, or prints the URL to open).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIBDIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/demo"
STACK_FILE="${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json}"
mkdir -p "$OUT"

echo "== building the library and the host" >&2
(cd "$ROOT" && cargo build --workspace --quiet)
"${CC:-gcc}" -std=c11 -Wall -Wextra -Werror -g -I"$ROOT/include" -o "$OUT/demo_host" "$HERE/demo_host.c" \
    -L"$LIBDIR" -lmailoauth -Wl,-rpath,"$LIBDIR"

interactive=0
if [[ "${1:-}" == "--interactive" ]]; then
    interactive=1
    shift
fi

if [[ $# -eq 0 && ! -f "$STACK_FILE" ]]; then
    echo "== starting the local test stack" >&2
    "$ROOT/tests/stack/up.sh" >&2
    trap '"$ROOT/tests/stack/down.sh" >&2' EXIT
fi

config=()
if [[ $# -gt 0 ]]; then
    config=("$1")
elif [[ -f "$STACK_FILE" ]]; then
    # The test stack's facts -> a mailoauth configuration. "custom" provider: the endpoints
    # come from the authority, tokens go only to the servers listed here.
    python3 - "$STACK_FILE" "$OUT/stack-config.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
outlook = "https://outlook.office.com/"
config = {
    "provider": "custom",
    "authority": s["idp"]["http"],            # http:// is allowed only for loopback test services
    "allow_plaintext_loopback": True,
    "tenant": s["idp"]["tenant"],
    "client_id": s["idp"]["client_id"],
    "scopes": {"smtp": outlook + "SMTP.Send", "imap": outlook + "IMAP.AccessAsUser.All",
               "pop3": outlook + "POP.AccessAsUser.All", "app": "https://outlook.office365.com/.default"},
    "servers": {
        "smtp": {"host": s["smtp"]["host"], "port": s["smtp"]["starttls"], "security": "starttls"},
        "imap": {"host": s["imap"]["host"], "port": s["imap"]["tls"], "security": "tls"},
        "pop3": {"host": s["pop3"]["host"], "port": s["pop3"]["tls"], "security": "tls"},
    },
    "tls": {"ca_file": s["ca_file"]},       # the stack's own CA, on top of the system's
    "cache": {"protection": "user", "path": s["state_dir"] + "/demo-cache"},
    "browser": "system",
}
json.dump(config, open(sys.argv[2], "w"), indent=2)
EOF
    echo "== using the test stack ($STACK_FILE)" >&2
    config=("$OUT/stack-config.json" "alice@contoso.test" "bob@contoso.test")
    idp_admin="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["idp"]["http"])' "$STACK_FILE")/admin/settings"
    if ((interactive)); then
        python3 -c 'import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], b"{\"auto_consent\": false}", {"Content-Type": "application/json"}))' "$idp_admin"
        echo "== interactive: click Accept on the sign-in page" >&2
    else
        python3 -c 'import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], b"{\"auto_consent\": true}", {"Content-Type": "application/json"}))' "$idp_admin"
        export BROWSER="$HERE/auto_browser.py"
    fi
fi

echo "== running $OUT/demo_host ${config[*]:-}" >&2
"$OUT/demo_host" "${config[@]}" | tee "$OUT/demo_host.out"

# With the test stack: show that the mail reached bob's maildir (new/), found by the
# Message-ID the host printed ("  sent: {...}"): its Subject line as it arrived (RFC 2047),
# decoded, and the size of the delivered file; then that every forward the host printed
# ("  forwarded: {...}") arrived too, with the original enquiry attached.
if [[ ${#config[@]} -ge 3 ]]; then
    echo "== the mail in ${config[2]}'s maildir" >&2
    python3 - "$STACK_FILE" "${config[2]}" "$OUT/demo_host.out" <<'EOF'
import email, email.header, email.policy, json, pathlib, sys, time
stack = json.load(open(sys.argv[1]))
local, domain = sys.argv[2].split("@")
out = open(sys.argv[3], encoding="utf-8").read().splitlines()
new = pathlib.Path(stack["maildir"].replace("%d", domain).replace("%n", local)) / "new"


def arrived(message_id):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        hits = [p for p in new.glob("*") if message_id.encode() in p.read_bytes()] if new.is_dir() else []
        if hits:
            return hits[0]
        time.sleep(0.1)
    sys.exit(f"{message_id} did not arrive in {new}")


def ids(prefix):
    return [json.loads(line[len(prefix):])["message_id"] for line in out if line.startswith(prefix)]


sent = ids("  sent: ")
if not sent:
    sys.exit("the host sent nothing")
path = arrived(sent[-1])
raw = path.read_bytes()
lines = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").split("\r\n")
k = next(i for i, line in enumerate(lines) if line.lower().startswith("subject:"))
subject = lines[k]
while k + 1 < len(lines) and lines[k + 1][:1] in (" ", "\t"):  # folded continuation lines
    k += 1
    subject += lines[k]
decoded = str(email.header.make_header(email.header.decode_header(subject[len("Subject:"):].strip())))
print(f"  arrived : {path}")
print(f"  header  : {subject}")
print(f"  decoded : Subject: {decoded}")
print(f"  size    : {len(raw)} bytes")

forwarded = ids("  forwarded: ")
if len(forwarded) != 3:
    sys.exit(f"expected 3 forwards (2 over IMAP, 1 over POP3), the host printed {len(forwarded)}")
for message_id in forwarded:
    msg = email.message_from_bytes(arrived(message_id).read_bytes(), policy=email.policy.default)
    inner = [part for part in msg.walk() if part.get_content_type() == "message/rfc822"]
    if not inner:
        sys.exit(f"{message_id}: no message/rfc822 part")
    original = inner[0].get_payload()[0]
    print(f"  forward : {msg['subject']}  (attached: {original['subject']})")
EOF
fi
