#!/usr/bin/env bash
# Builds gm-agent as the e2e test does (gcc -static -Os) and checks its
# protocol over stdin/stdout (`gm-agent --stdio`), without a guest.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v gcc >/dev/null || { echo "SKIP: no gcc" >&2; exit 77; }
[ -f "$(gcc -print-file-name=libc.a)" ] || { echo "SKIP: no static libc (libc6-dev)" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -static -Os -Wall -Wextra -Werror -o "$tmp/gm-agent" "$HERE/gm-agent.c"

# A 0xFF from the host and a half-sent message before it are dropped;
# messages may be newline-delimited or back to back.
printf '{"execute":"guest-pi\xff{"execute":"guest-sync-delimited","arguments":{"id":1234567890123}}\n' >"$tmp/in"
printf '{"execute":"guest-sync", "arguments": {"id": 5}}{"execute":"guest-ping"}\n' >>"$tmp/in"
printf '{"execute":"guest-info"}\n{"execute":"guest-get-load"}\n{"execute":"guest-exec"}\n' >>"$tmp/in"
printf '{"arguments":{}}\n{"execute":"guest-sync"}\n' >>"$tmp/in"
printf '{"execute":"x-gm-burn","arguments":{"count":0,"seconds":1}}\n' >>"$tmp/in"
printf '{"execute":"x-gm-stop-agent"}\n{"execute":"guest-ping"}\n' >>"$tmp/in"
timeout 10 "$tmp/gm-agent" --stdio <"$tmp/in" >"$tmp/out" 2>/dev/null

fail() { echo "FAIL: $*" >&2; echo "--- output:" >&2; cat -v "$tmp/out" >&2; exit 1; }
[ "$(head -c1 "$tmp/out" | od -An -tx1 | tr -d ' ')" = ff ] || fail "guest-sync-delimited reply lacks the 0xFF sentinel"
mapfile -t lines < <(tail -c +2 "$tmp/out")
expect() { # line number, extended regex
  [[ "${lines[$1]:-}" =~ $2 ]] || fail "reply $1 is '${lines[$1]:-}', want /$2/"
}
expect 0 '^\{"return":1234567890123\}$'
expect 1 '^\{"return":5\}$'
expect 2 '^\{"return":\{\}\}$'
expect 3 '^\{"return":\{"version":"[^"]+","supported_commands":\[.*\{"enabled":true,"name":"guest-get-load","success-response":true\}.*\]\}\}$'
expect 4 '^\{"return":\{"load1m":[0-9]+\.[0-9]+,"load5m":[0-9]+\.[0-9]+,"load15m":[0-9]+\.[0-9]+\}\}$'
expect 5 '^\{"error":\{"class":"CommandNotFound","desc":"The command guest-exec has not been found"\}\}$'
expect 6 '^\{"error":\{"class":"GenericError",'
expect 7 '^\{"error":\{"class":"GenericError","desc":"Parameter .id. is missing"\}\}$'
expect 8 '^\{"error":\{"class":"GenericError",'
expect 9 '^\{"return":\{\}\}$'
[ "${#lines[@]}" -eq 10 ] || fail "the agent answered after x-gm-stop-agent (${#lines[@]} replies)"
if command -v python3 >/dev/null; then
  printf '%s\n' "${lines[@]}" | python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]' ||
    fail "a reply is not valid JSON"
fi
echo "gm-agent protocol: ${#lines[@]} replies as expected"
