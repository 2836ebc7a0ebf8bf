#!/usr/bin/env bash
# make demo: a working certificate authority in a temporary directory.
#
# Starts teleport-ca on the embedded store, adds a user with a password and
# TOTP secret, signs in over the HTTPS API with a code from oathtool, gets
# a certificate for a fresh key, shows it with ssh-keygen -L and the audit
# log. Touches nothing outside its temporary directory; Ctrl-C (or the end,
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
command -v curl      >/dev/null || need+=(curl)
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
cleanup() {
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

step "Signing in over HTTPS with password + a TOTP code from oathtool"
CODE=$(oathtool --totp -b "$SECRET")
echo "code now: $CODE"
LOGIN=$(curl -sS --cacert "$DIR/data/tls_root.crt" -H 'Content-Type: application/json' \
  -d "{\"user\":\"alice\",\"password\":\"$PASSWORD\",\"totp\":\"$CODE\"}" "https://127.0.0.1:$PORT/v1/login")
SESSION=$(echo "$LOGIN" | sed -n 's/.*"session":"\([^"]*\)".*/\1/p')
[ -n "$SESSION" ] || { echo "demo: sign-in failed: $LOGIN"; exit 1; }
echo "signed in; session expires $(echo "$LOGIN" | sed -n 's/.*"expires":"\([^"]*\)".*/\1/p')"

step "The same code a second time is refused (replay)"
curl -sS --cacert "$DIR/data/tls_root.crt" -H 'Content-Type: application/json' \
  -d "{\"user\":\"alice\",\"password\":\"$PASSWORD\",\"totp\":\"$CODE\"}" "https://127.0.0.1:$PORT/v1/login"

step "Getting a 1h certificate for a new ed25519 key within the sign-in"
ssh-keygen -q -t ed25519 -N '' -C alice@demo -f "$DIR/id_ed25519"
CERT=$(curl -sS --cacert "$DIR/data/tls_root.crt" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $SESSION" \
  -d "{\"public_key\":\"$(cat "$DIR/id_ed25519.pub")\",\"ttl\":\"1h\"}" "https://127.0.0.1:$PORT/v1/certs/user")
echo "$CERT" | sed -n 's/.*"certificate":"\([^"]*\)".*/\1/p' >"$DIR/id_ed25519-cert.pub"
[ -s "$DIR/id_ed25519-cert.pub" ] || { echo "demo: issuance failed: $CERT"; exit 1; }
show ssh-keygen -L -f "$DIR/id_ed25519-cert.pub"

step "The audit log"
show "${CAADM[@]}" audit ls

if [ -n "${DEMO_CHECK:-}" ]; then
  step "Demo finished (DEMO_CHECK): stopping the CA and removing $DIR"
  exit 0
fi
step "The CA keeps running; try it by hand (Ctrl-C stops it and removes $DIR)"
cat <<MSG
  ${CAADM[*]} users ls
  ${CAADM[*]} roles add ops --logins root --labels env=prod --max-ttl 8h
  ${CAADM[*]} tokens add --role node --labels env=prod
  ${CAADM[*]} sign --user alice --pubkey $DIR/id_ed25519.pub --logins root --ttl 10m
  ${CAADM[*]} certs ls
  oathtool --totp -b $SECRET        # alice's current code (password: $PASSWORD)
MSG
[ -n "${DEMO_SHELL:-}" ] || echo "(make demo-shell prints the same and waits the same way)"
wait "$CA_PID"
