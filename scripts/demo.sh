#!/usr/bin/env bash
# make demo: a working certificate authority in a temporary directory.
#
# Starts teleport-ca on the embedded store, adds a user with a password and
# TOTP secret, signs her in with teleport-keyhelper and a code from
# oathtool into a private ssh-agent, shows the certificate with ssh-add -L
# and ssh-keygen -L, a replayed code refused, and the audit log. Touches nothing outside its temporary directory; Ctrl-C (or the end,
# with DEMO_CHECK=1) stops the CA and removes everything.
#
#   DEMO_SHELL=1  leave the CA running and print commands to try by hand
#   DEMO_CHECK=1  non-interactive: run the steps and exit (CI uses this)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"

need=()
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v oathtool  >/dev/null || need+=(oathtool)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "demo: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "demo: missing ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

DIR=$(mktemp -d /tmp/teleport-ca-demo.XXXXXX)
CA_PID=
AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null
  [ -n "$CA_PID" ] && kill "$CA_PID" 2>/dev/null && wait "$CA_PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: 3080 if it is free, else one the kernel picks.
PORT=3080
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then PORT=$((20000 + RANDOM % 20000)); fi
SOCK="$DIR/admin.sock"
CAADM=("$BIN/caadm" --socket "$SOCK")
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Starting teleport-ca in $DIR (HTTPS on 127.0.0.1:$PORT)"
"$BIN/teleport-ca" --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --admin-socket "$SOCK" \
  --public-url "https://127.0.0.1:$PORT" >"$DIR/ca.out" 2>"$DIR/ca.log" &
CA_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "demo: teleport-ca did not start:"; cat "$DIR/ca.log"; exit 1; }
cat "$DIR/ca.out"

step "The CA's public keys and pin"
show "${CAADM[@]}" ca show

step "Adding user alice (logins root and alice) with a password"
PASSWORD="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
OUT=$(printf '%s\n' "$PASSWORD" | "${CAADM[@]}" users add alice --logins root,alice --password-stdin)
echo "$OUT"
SECRET=$(echo "$OUT" | sed -n 's/.*secret=\([A-Z2-7]*\).*/\1/p' | head -n1)
echo "password: $PASSWORD"
echo "TOTP secret: $SECRET"

step "alice signs in with teleport-keyhelper (password + a TOTP code from oathtool)"
# A private ssh-agent for the demo, so nothing touches your own agent.
eval "$(ssh-agent -a "$DIR/agent.sock" -s)" >/dev/null
AGENT_PID=$SSH_AGENT_PID
export TELEPORT_HOME="$DIR/home"   # instead of ~/.teleport
PIN=$(sed -n 's/^CA pin: //p' "$DIR/ca.out")
CODE=$(oathtool --totp -b "$SECRET")
echo "code now: $CODE"
printf '%s\n%s\n' "$PASSWORD" "$CODE" | show "$BIN/teleport-keyhelper" login \
  --server "https://127.0.0.1:$PORT" --user alice --ca-pin "$PIN"

step "The certificate is in ssh-agent, with its lifetime"
show ssh-add -L
show "$BIN/teleport-keyhelper" status

step "The same code a second time is refused (replay)"
printf '%s\n%s\n' "$PASSWORD" "$CODE" | "$BIN/teleport-keyhelper" login --relogin \
  --server "https://127.0.0.1:$PORT" --user alice --ca-pin "$PIN" || true

step "The certificate, read by ssh-keygen -L"
show ssh-keygen -L -f "$TELEPORT_HOME/127.0.0.1_$PORT/key-cert.pub"

step "The audit log"
show "${CAADM[@]}" audit ls

if [ -n "${DEMO_CHECK:-}" ]; then
  step "Demo finished (DEMO_CHECK): stopping the CA and removing $DIR"
  exit 0
fi
step "The CA keeps running; try it by hand (Ctrl-C stops it and removes $DIR)"
cat <<MSG
  Web sign-in: https://127.0.0.1:$PORT/ (accept the CA's certificate, pin $PIN)
  ${CAADM[*]} users ls
  ${CAADM[*]} roles add ops --logins root --labels env=prod --max-ttl 8h
  ${CAADM[*]} tokens add --role node --labels env=prod
  SSH_AUTH_SOCK=$DIR/agent.sock TELEPORT_HOME=$DIR/home $BIN/teleport-keyhelper status
  ${CAADM[*]} certs ls
  oathtool --totp -b $SECRET        # alice's current code (password: $PASSWORD)
MSG
[ -n "${DEMO_SHELL:-}" ] || echo "(make demo-shell prints the same and waits the same way)"
wait "$CA_PID"
