#!/usr/bin/env bash
# Installs what the test suites need and a fresh Debian 12 machine lacks; does nothing when
# everything is there. Called by tests/run.sh (the README's test command) and by .ci/run.
#   Debian: Dovecot and Postfix (the stack), gcc/g++/valgrind (C and C++ tests), pkgconf
#   (pkg-config packaging test), Chromium + ChromeDriver (browser consent), PostgreSQL (host
#   store), Mono with the .NET Framework 4.6.2 reference assemblies (.NET binding).
#   PyPI: pytest, requests, selenium, psycopg; the CoreCLR 3.1 runtime (dotnetcore2) into
#   ~/.cache/mailoauth-tools for the .NET binding's second run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
[[ -x /usr/sbin/dovecot ]] || need+=(dovecot-core)
[[ -x /usr/lib/dovecot/imap ]] || need+=(dovecot-imapd)
[[ -x /usr/lib/dovecot/pop3 ]] || need+=(dovecot-pop3d)
[[ -x /usr/lib/dovecot/lmtp ]] || need+=(dovecot-lmtpd)
[[ -x /usr/sbin/postfix ]] || need+=(postfix)
command -v openssl >/dev/null || need+=(openssl ca-certificates)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v g++ >/dev/null || need+=(g++)
command -v valgrind >/dev/null || need+=(valgrind)
command -v pkg-config >/dev/null || need+=(pkgconf)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need+=(chromium-driver)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v mcs >/dev/null || need+=(mono-mcs)
command -v mono >/dev/null || need+=(mono-runtime)
[[ -f /usr/lib/mono/4.6.2-api/mscorlib.dll ]] || need+=(mono-devel)
if ((${#need[@]})); then
  echo "install-deps.sh: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

pip=(python3 -m pip install -q --disable-pip-version-check)
python3 -c 'import pytest, requests' 2>/dev/null || "${pip[@]}" pytest requests
python3 -c 'import selenium, psycopg' 2>/dev/null || "${pip[@]}" 'selenium==4.27.1' 'psycopg[binary]==3.2.3'
dotnet_tools="$HOME/.cache/mailoauth-tools/dotnetcore31"
if [[ ! -x "$dotnet_tools/dotnetcore2/bin/dotnet" ]]; then
  "${pip[@]}" --no-deps --target "$dotnet_tools" 'dotnetcore2==3.1.23'
fi
