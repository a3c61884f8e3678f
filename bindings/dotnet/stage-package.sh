#!/usr/bin/env bash
# Lays out the NuGet package tree (MailOAuth.nuspec) in OUT:
#   README.md
#   lib/net462/MailOAuth.dll                    built here with mcs -sdk:4.6.2
#   lib/netstandard2.0/MailOAuth.dll            only with a .NET SDK (dotnet pack MailOAuth.csproj)
#   build/net462/MailOAuth.targets              copies the Windows DLLs for .NET Framework apps
#   runtimes/linux-x64/native/libmailoauth.so   from --linux-x64 (default: the newest target/*/libmailoauth.so)
#   runtimes/win-x64/native/mailoauth.dll       from --win-x64 (x86_64-pc-windows-msvc build; not on Linux)
#   runtimes/win-x86/native/mailoauth.dll       from --win-x86 (i686-pc-windows-msvc build; not on Linux)
# A slot that cannot be filled here gets a MISSING.txt saying how to fill it; the script
# exits 0 and lists them. Usage: stage-package.sh OUT [--linux-x64 SO] [--win-x64 DLL] [--win-x86 DLL]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: stage-package.sh OUT [--linux-x64 SO] [--win-x64 DLL] [--win-x86 DLL]}"
shift
linux="" winx64="" winx86=""
while (($#)); do
  case "$1" in
    --linux-x64) linux="$2"; shift 2 ;;
    --win-x64) winx64="$2"; shift 2 ;;
    --win-x86) winx86="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$linux" ]]; then
  linux="$(ls -t "$root"/target/release/libmailoauth.so "$root"/target/debug/libmailoauth.so 2>/dev/null | head -1 || true)"
fi

case "$(realpath -m "$out")" in
  / | "$root" | "$here" | "$here/package" | "$here/src" | "$here/tests") echo "refusing to replace $out" >&2; exit 2 ;;
esac
rm -rf "$out"
mkdir -p "$out/lib/net462" "$out/lib/netstandard2.0" "$out/build/net462" \
  "$out/runtimes/linux-x64/native" "$out/runtimes/win-x64/native" "$out/runtimes/win-x86/native"
cp "$here/README.md" "$out/"
cp "$here/package/build/net462/MailOAuth.targets" "$out/build/net462/"
mcs -sdk:4.6.2 -target:library -warnaserror+ -optimize+ -out:"$out/lib/net462/MailOAuth.dll" "$here"/src/*.cs

missing=()
place() {  # place SRC DEST_DIR NAME HOWTO
  if [[ -n "$1" && -f "$1" ]]; then
    cp "$1" "$2/$3"
  else
    echo "$4" > "$2/MISSING.txt"
    missing+=("$2/$3")
  fi
}
place "$linux" "$out/runtimes/linux-x64/native" libmailoauth.so \
  "cargo build --release (x86_64-unknown-linux-gnu), then stage-package.sh OUT --linux-x64 target/release/libmailoauth.so"
place "$winx64" "$out/runtimes/win-x64/native" mailoauth.dll \
  "Built on Windows: cargo build --release --target x86_64-pc-windows-msvc (static CRT via .cargo/config.toml); then --win-x64 target/x86_64-pc-windows-msvc/release/mailoauth.dll"
place "$winx86" "$out/runtimes/win-x86/native" mailoauth.dll \
  "Built on Windows: cargo build --release --target i686-pc-windows-msvc; then --win-x86 target/i686-pc-windows-msvc/release/mailoauth.dll"
echo "dotnet SDK needed: dotnet pack MailOAuth.csproj builds lib/netstandard2.0/MailOAuth.dll" > "$out/lib/netstandard2.0/MISSING.txt"
missing+=("$out/lib/netstandard2.0/MailOAuth.dll")

echo "staged $out"
for m in "${missing[@]}"; do echo "  not filled here: ${m#"$out"/}"; done
