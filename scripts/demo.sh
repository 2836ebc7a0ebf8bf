#!/usr/bin/env bash
# make demo: the whole suite on one machine, in one temporary directory.
#
# As root (sudo make demo) it runs:
#   - teleport-ca on the embedded store (recording mode "proxy"), with two
#     roles and a user, alice, with a password and a TOTP secret (printed;
#     the codes the steps need come from oathtool);
#   - teleport-proxy, the recording jump proxy, on loopback ports;
#   - two nodes, node-staging (env=staging) and node-prod (env=prod): each a
#     real sshd on a loopback port with the drop-in from `teleport-node
#     sshd-config`, plus its `teleport-node run` holding a reverse tunnel to
#     the proxy (the proxy reaches the sshds only through those tunnels);
# then alice signs in with `teleport-keyhelper login` (password + code) into
# a private ssh-agent, a replayed code is refused, she logs in to both nodes
# with `ssh -J` and in one hop, a login is refused by policy (and her own
# certificate at a node's sshd), a terminal session is recorded, listed and
# played back with asciinema, and the audit log shows what happened.
#
# As another user it runs the CA and keyhelper part only and says so: sshd
# must run as root, and sshd runs teleport-authkeys only from a root-owned
# path.
#
# Everything lives in one directory, /run/teleport-demo.XXXXXX as root (sshd
# refuses an AuthorizedPrincipalsCommand under the world-writable /tmp) or
# /tmp/teleport-demo.XXXXXX otherwise, on loopback ports (3080, 3023, 3024
# when free, else random ones). Nothing outside it is written, except:
# /run/sshd (sshd's privilege separation directory), created when missing
# and removed again; the Debian packages it installs when run as root and
# they are missing (openssh-server, openssh-client, oathtool, asciinema;
# as another user it prints the apt-get command to run); and the terminal
# session's entry in utmp/wtmp/lastlog, which sshd makes for every PTY
# login. No system sshd_config, ~/.ssh, ssh-agent, /var/lib/extrausers or
# systemd unit is used: ssh runs with -F, each sshd with -f, teleport-node
# with --nss-dir '' --reload-command '', teleport-keyhelper with
# TELEPORT_HOME and a private ssh-agent. On exit, error or Ctrl-C every
# process it started is stopped and the directory removed.
#
#   DEMO_SHELL=1  (make demo-shell) leave everything running and print the
#                 ssh commands, password and TOTP secret to try by hand;
#                 Ctrl-C stops it all and removes the directory
#   DEMO_CHECK=1  non-interactive (CI): run the steps, exit non-zero when a
#                 step that should succeed fails or a refusal is not refused
# shellcheck disable=SC2016 # the $ in single quotes are shown, not expanded
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
START=$SECONDS

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
note() { printf '   %s\n' "$@"; }
die() { echo "demo: $*" >&2; exit 1; }
# quote prints its arguments as a shell would need them typed.
quote() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ || $a =~ ^\$[A-Z_]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}
show() { printf '$ %s\n' "$(quote "$@")"; "$@"; }

ROOT=
[ "$(id -u)" = 0 ] && ROOT=1

# ---- Debian packages ------------------------------------------------------
need=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && command -v ssh-agent >/dev/null || need+=(openssh-client)
command -v oathtool >/dev/null || need+=(oathtool)
if [ -n "$ROOT" ]; then
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v asciinema >/dev/null || need+=(asciinema)
  command -v script >/dev/null || need+=(bsdutils)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ -n "$ROOT" ] && command -v apt-get >/dev/null; then
    echo "demo: installing ${need[*]} (apt-get install -y ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "${need[@]}" >/dev/null; then
      apt-get update -qq >/dev/null
      apt-get install -y -qq "${need[@]}" >/dev/null
    fi
  else
    die "missing ${need[*]}; run: sudo apt-get install -y ${need[*]}"
  fi
fi
for b in teleport-ca caadm teleport-keyhelper teleport-proxy teleport-node teleport-authkeys; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run make build (or make demo)"
done

# ---- The directory, the processes, cleanup ---------------------------------
if [ -n "$ROOT" ]; then
  DIR=$(mktemp -d /run/teleport-demo.XXXXXX)
  chmod 0755 "$DIR" # root-owned, not group/world-writable: sshd's rule for teleport-authkeys
else
  DIR=$(mktemp -d /tmp/teleport-demo.XXXXXX)
fi
PIDS=()     # our children, stopped in reverse order
AGENT_PID=  # ssh-agent forks away from us
MADE_RUN_SSHD=
alive() { # a live process (not gone, not a zombie waiting for wait)
  local s
  s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "${s%% *}" != Z ]
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$? pid i left
  trap - EXIT INT TERM
  set +e
  if [ "$rc" != 0 ] && [ "$rc" != 130 ]; then
    for f in "$DIR"/*.log "$DIR"/*/*.log; do
      [ -s "$f" ] && { echo "--- ${f#"$DIR"/} (last lines)"; tail -n 15 "$f"; }
    done >&2
  fi
  [ "$rc" = 130 ] && echo "demo: interrupted; stopping everything and removing $DIR" >&2
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null
  for _ in $(seq 50); do
    left=
    for pid in "${PIDS[@]}" $AGENT_PID; do alive "$pid" && left=1; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}" $AGENT_PID; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$DIR"
  [ -n "$MADE_RUN_SSHD" ] && rmdir /run/sshd 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Ports -----------------------------------------------------------------
TAKEN=" "
# free_port P: P if nothing listens on 127.0.0.1:P, else a random free one.
free_port() {
  local p=$1
  while [[ $TAKEN == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((20000 + RANDOM % 20000))
  done
  TAKEN+="$p "
  echo "$p"
}
# wait_port P NAME PID LOG: wait until 127.0.0.1:P accepts, while PID lives.
wait_port() {
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    alive "$3" || { cat "$4" >&2; die "$2 exited"; }
    sleep 0.1
  done
  cat "$4" >&2
  die "$2 is not listening on 127.0.0.1:$1 after 15 s"
}
# bg LOG CMD...: start CMD in the background with its output in LOG.
bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
}

CA_PORT=$(free_port 3080)
SOCK="$DIR/ca/admin.sock"
CAADM=("$BIN/caadm" --socket "$SOCK")
caadm() { "${CAADM[@]}" "$@"; }

# ---- The CA ----------------------------------------------------------------
step "Starting teleport-ca in $DIR (HTTPS on 127.0.0.1:$CA_PORT, embedded store, recording mode proxy)"
mkdir -m 0700 "$DIR/ca"
"$BIN/teleport-ca" --data-dir "$DIR/ca/data" --listen "127.0.0.1:$CA_PORT" --admin-socket "$SOCK" \
  --public-url "https://127.0.0.1:$CA_PORT" >"$DIR/ca/ca.out" 2>"$DIR/ca/ca.log" &
PIDS+=($!)
CA_PID=$!
for _ in $(seq 150); do [ -S "$SOCK" ] && break; alive "$CA_PID" || break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$DIR/ca/ca.log" >&2; die "teleport-ca did not start"; }
cat "$DIR/ca/ca.out"
note "caadm below is $BIN/caadm --socket $SOCK (the CA's admin socket)"
PIN=$(sed -n 's/^CA pin: //p' "$DIR/ca/ca.out")
[ -n "$PIN" ] || die "no CA pin in teleport-ca's output"

step "The CA's public keys and TLS pin"
show caadm ca show

step "Roles: what alice may do where"
show caadm roles add staging-admin --logins root,www-data --labels env=staging
show caadm roles add prod-admin --logins root --labels env=prod
note "alice gets both: root on env=staging and env=prod, www-data on env=staging only."

step "Adding user alice with a password and a TOTP secret"
PASSWORD="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
printf '$ printf %%s\\n "$PASSWORD" | %s\n' "$(quote caadm users add alice --roles staging-admin,prod-admin --password-stdin)"
OUT=$(printf '%s\n' "$PASSWORD" | caadm users add alice --roles staging-admin,prod-admin --password-stdin)
echo "$OUT"
SECRET=$(echo "$OUT" | sed -n 's/.*secret=\([A-Z2-7]*\).*/\1/p' | head -n1)
[ -n "$SECRET" ] || die "no TOTP secret in caadm's output"
echo "alice's password:    $PASSWORD"
echo "alice's TOTP secret: $SECRET   (oathtool --totp -b $SECRET prints her current code)"

# ---- Proxy and nodes (root only) ------------------------------------------
NODES=(node-staging node-prod)
declare -A LABEL SSHD_PORT
LABEL[node-staging]=env=staging
LABEL[node-prod]=env=prod
if [ -n "$ROOT" ]; then
  PROXY_PORT=$(free_port 3023)
  TUNNEL_PORT=$(free_port 3024)
  PROXY="127.0.0.1:$PROXY_PORT"

  step "Starting teleport-proxy (users: $PROXY, node tunnels: 127.0.0.1:$TUNNEL_PORT)"
  echo '$ caadm tokens add --role proxy     # TOKEN: its last line'
  OUT=$(caadm tokens add --role proxy)
  echo "$OUT"
  TOKEN=$(echo "$OUT" | tail -n1)
  printf '$ %s\n' "$(quote "$BIN/teleport-proxy" --data-dir "$DIR/proxy" --listen "$PROXY" \
    --tunnel-listen "127.0.0.1:$TUNNEL_PORT" --public-addr "$PROXY" --server "https://127.0.0.1:$CA_PORT" \
    --token '$TOKEN' --ca-pin "$PIN" --name proxy1) &"
  bg "$DIR/proxy.log" "$BIN/teleport-proxy" --data-dir "$DIR/proxy" --listen "$PROXY" \
    --tunnel-listen "127.0.0.1:$TUNNEL_PORT" --public-addr "$PROXY" --server "https://127.0.0.1:$CA_PORT" \
    --token "$TOKEN" --ca-pin "$PIN" --name proxy1
  wait_port "$PROXY_PORT" teleport-proxy "${PIDS[-1]}" "$DIR/proxy.log"
  show caadm proxies ls

  if [ ! -d /run/sshd ]; then
    mkdir -m 0755 /run/sshd
    MADE_RUN_SSHD=1
    note "Created /run/sshd, sshd's privilege separation directory (removed again at the end)."
  fi
  # sshd without PAM refuses to log in to an account whose password is
  # locked with "!" (root on machines installed without a root password);
  # with PAM the account check is PAM's, which allows key logins.
  USE_PAM=no
  case $(getent shadow root | cut -d: -f2) in
    '!'*) USE_PAM=yes ;;
  esac
  # sshd runs AuthorizedPrincipalsCommand only from a root-owned path that
  # no group or other may write: a copy in the demo directory under /run.
  mkdir -m 0755 "$DIR/bin"
  install -m 0755 "$BIN/teleport-authkeys" "$DIR/bin/teleport-authkeys"

  for node in "${NODES[@]}"; do
    nd="$DIR/$node"
    SSHD_PORT[$node]=$(free_port $((20000 + RANDOM % 20000)))
    step "Node $node (${LABEL[$node]}): join, sshd on 127.0.0.1:${SSHD_PORT[$node]}, teleport-node run"
    mkdir -m 0755 "$nd"
    printf '$ TOKEN=$(%s | tail -n1)\n' "$(quote caadm tokens add --role node --labels "${LABEL[$node]}")"
    TOKEN=$(caadm tokens add --role node --labels "${LABEL[$node]}" | tail -n1)
    # --authkeys-user nobody: the packages create a dedicated account; the
    # demo adds none to the system.
    printf '$ %s\n' "$(quote "$BIN/teleport-node" join --server "https://127.0.0.1:$CA_PORT" --token '$TOKEN' \
      --ca-pin "$PIN" --data-dir "$nd/data" --name "$node" --authkeys-user nobody)"
    "$BIN/teleport-node" join --server "https://127.0.0.1:$CA_PORT" --token "$TOKEN" \
      --ca-pin "$PIN" --data-dir "$nd/data" --name "$node" --authkeys-user nobody
    printf '$ %s > %s\n' "$(quote "$BIN/teleport-node" sshd-config --data-dir "$nd/data" --authkeys "$DIR/bin/teleport-authkeys")" "$nd/teleport-node.conf"
    "$BIN/teleport-node" sshd-config --data-dir "$nd/data" --authkeys "$DIR/bin/teleport-authkeys" >"$nd/teleport-node.conf"
    sed 's/^/   | /' "$nd/teleport-node.conf"
    # The node's own sshd_config: loopback only, public keys only, and the
    # drop-in. sshd -f reads this file instead of /etc/ssh/sshd_config.
    cat >"$nd/sshd_config" <<EOF
ListenAddress 127.0.0.1:${SSHD_PORT[$node]}
PidFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile none
UsePAM $USE_PAM
StrictModes no
LogLevel VERBOSE
PrintMotd no
PrintLastLog no
Include $nd/teleport-node.conf
Subsystem sftp internal-sftp
EOF
    /usr/sbin/sshd -t -f "$nd/sshd_config" || die "sshd -t refused $nd/sshd_config"
    printf '$ /usr/sbin/sshd -D -e -f %s &   (ListenAddress 127.0.0.1:%s, Include teleport-node.conf)\n' "$nd/sshd_config" "${SSHD_PORT[$node]}"
    bg "$nd/sshd.log" /usr/sbin/sshd -D -e -f "$nd/sshd_config"
    wait_port "${SSHD_PORT[$node]}" "sshd of $node" "${PIDS[-1]}" "$nd/sshd.log"
    # --nss-dir '' and --reload-command '': no personal accounts in
    # /var/lib/extrausers, no systemctl reload ssh.
    printf '$ %s &\n' "$(quote "$BIN/teleport-node" run --data-dir "$nd/data" --sshd-addr "127.0.0.1:${SSHD_PORT[$node]}" \
      --nss-dir '' --reload-command '')"
    bg "$nd/node.log" "$BIN/teleport-node" run --data-dir "$nd/data" --sshd-addr "127.0.0.1:${SSHD_PORT[$node]}" \
      --nss-dir '' --reload-command ''
  done
  step "The cluster's nodes"
  show caadm nodes ls
else
  step "Skipping the proxy and the nodes: they need root"
  note "Each node is a real sshd, which must run as root, and sshd runs teleport-authkeys" \
    "only from a root-owned path. Run sudo make demo for the whole cluster;" \
    "this run shows the CA and teleport-keyhelper only."
  [ -x /usr/sbin/sshd ] || note "(sshd is not installed here: sudo make demo installs openssh-server)"
fi

# ---- alice signs in --------------------------------------------------------
step "alice signs in with teleport-keyhelper (password + a TOTP code from oathtool)"
# A private ssh-agent and state directory: nothing touches your own.
eval "$(ssh-agent -a "$DIR/agent.sock" -s)" >/dev/null
AGENT_PID=$SSH_AGENT_PID
mkdir -m 0700 "$DIR/alice"
export TELEPORT_HOME="$DIR/alice/teleport" # instead of ~/.teleport
note "SSH_AUTH_SOCK=$SSH_AUTH_SOCK (a private ssh-agent), TELEPORT_HOME=$TELEPORT_HOME"
CODE=$(oathtool --totp -b "$SECRET")
echo "\$ oathtool --totp -b $SECRET"
echo "$CODE"
LOGIN=("$BIN/teleport-keyhelper" login --server "https://127.0.0.1:$CA_PORT" --user alice --ca-pin "$PIN")
[ -n "$ROOT" ] && LOGIN+=(--hosts 'node-*')
printf '$ printf "%%s\\n%%s\\n" "$PASSWORD" %s | %s\n' "$CODE" "$(quote "${LOGIN[@]}")"
printf '%s\n%s\n' "$PASSWORD" "$CODE" | "${LOGIN[@]}" >"$DIR/alice/login.out"
cat "$DIR/alice/login.out"

step "The certificate is in the private ssh-agent, with its lifetime"
show ssh-add -L
show "$BIN/teleport-keyhelper" status

step "The same code a second time is refused (a code works once)"
printf '$ printf "%%s\\n%%s\\n" "$PASSWORD" %s | %s --relogin\n' "$CODE" "$(quote "${LOGIN[@]}")"
if printf '%s\n%s\n' "$PASSWORD" "$CODE" | "${LOGIN[@]}" --relogin >/dev/null; then
  die "the replayed code was accepted"
fi

step "The certificate, read by ssh-keygen -L"
show ssh-keygen -L -f "$TELEPORT_HOME/127.0.0.1_$CA_PORT/key-cert.pub"

if [ -n "$ROOT" ]; then
  # ---- ssh through the proxy ----------------------------------------------
  CFG="$DIR/ssh_config"
  step "alice's ssh_config (nothing in ~/.ssh is used: every ssh below runs with -F $CFG)"
  printf '$ %s > %s\n' "$(quote "$BIN/teleport-keyhelper" config)" "$CFG"
  "$BIN/teleport-keyhelper" config >"$CFG"
  note "(the block teleport-keyhelper login printed above)"
  show cat "$TELEPORT_HOME/127.0.0.1_$CA_PORT/known_hosts"
  SSH=(ssh -F "$CFG")
  # What the nodes print: both sshds run on this machine, so the sshd port
  # ($SSH_CONNECTION's last field) tells them apart.
  WHO='echo "$(id -un)@$(hostname) via the sshd on port ${SSH_CONNECTION##* }"'

  step "The nodes' reverse tunnels to the proxy"
  for node in "${NODES[@]}"; do
    for _ in $(seq 150); do
      grep -q "\"tunnel: node connected\".*\"node\":\"$node\"" "$DIR/proxy.log" && break
      sleep 0.1
    done
    grep "\"tunnel: node connected\".*\"node\":\"$node\"" "$DIR/proxy.log" | tail -n1 ||
      die "$node holds no tunnel to the proxy after 15 s"
  done
  note "Each sshd listens on its loopback port only; the proxy reaches it through its node's tunnel."
  show "${SSH[@]}" 127.0.0.1 nodes
  note "(the proxy lists the nodes alice may log in to)"

  step "ssh -J to both nodes through the proxy"
  for node in "${NODES[@]}"; do
    show "${SSH[@]}" -J "alice@$PROXY" "root@$node" "$WHO"
  done
  note "The proxy presents a host certificate for each node's name from the cluster's" \
    "host CA (the known_hosts above trusts only that CA, StrictHostKeyChecking yes)," \
    "and logs in to the node with a 2-minute session-CA certificate."

  step "One hop: the login and the node in the user name"
  show "${SSH[@]}" -p "$PROXY_PORT" "root@node-prod@127.0.0.1" "$WHO"

  step "Refused by policy: alice may be www-data on env=staging only"
  note "Her certificate carries the login www-data (staging-admin gives it on env=staging)," \
    "but no role of hers gives it on env=prod: the proxy refuses, and says why."
  printf '$ %s\n' "$(quote "${SSH[@]}" -J "alice@$PROXY" www-data@node-prod "$WHO")"
  OUT=$("${SSH[@]}" -J "alice@$PROXY" www-data@node-prod "$WHO" 2>&1) && die "www-data@node-prod was not refused"
  echo "$OUT"
  [[ $OUT == *'no role of yours allows login "www-data" on node "node-prod"'* ]] ||
    die "www-data@node-prod was not refused by the proxy's policy"

  step "Refused by the node: alice's own certificate, straight at node-prod's sshd"
  note "In recording mode proxy the nodes trust only the session CA, so nobody" \
    "reaches them without passing the proxy."
  DIRECT=("${SSH[@]}" -o HostKeyAlias=node-prod -o BatchMode=yes -p "${SSHD_PORT[node-prod]}" root@127.0.0.1 true)
  printf '$ %s\n' "$(quote "${DIRECT[@]}")"
  if OUT=$("${DIRECT[@]}" 2>&1); then
    die "alice's certificate logged in to node-prod's sshd directly"
  fi
  echo "$OUT"

  # ---- A recorded terminal session -----------------------------------------
  step "A terminal session (ssh -tt, typed from a here-document), recorded by the proxy"
  TYPED='echo "recorded on $(hostname) at port ${SSH_CONNECTION##* }: $((6*7))"
uname -sr
exit'
  printf "\$ %s <<'EOF'\n%s\nEOF\n" "$(quote "${SSH[@]}" -tt root@node-staging)" "$TYPED"
  "${SSH[@]}" -tt root@node-staging <<<"$TYPED"

  step "Sessions are listed while they run"
  printf '$ %s &\n' "$(quote "${SSH[@]}" root@node-prod 'sleep 4')"
  "${SSH[@]}" root@node-prod 'sleep 4' &
  PIDS+=($!)
  LONG=$!
  ok=
  for _ in $(seq 50); do
    caadm sessions ls 2>/dev/null | grep -q node-prod && { ok=1; break; }
    sleep 0.1
  done
  show caadm sessions ls
  [ -n "$ok" ] || die "the running session is not in caadm sessions ls"
  wait "$LONG" || die "the sleep session failed"

  step "The recording, stored at the CA and played back with asciinema"
  REC=
  for _ in $(seq 100); do
    REC=$(caadm recordings ls --json | awk -F'"' '$2 == "id" { id = $4 } $2 == "node" && $4 == "node-staging" { print id; exit }') || true
    [ -n "$REC" ] && break
    sleep 0.1
  done
  [ -n "$REC" ] || die "no recording of node-staging at the CA after 10 s"
  show caadm recordings ls
  caadm recordings export "$REC" >"$DIR/session.cast"
  printf '$ %s > %s\n' "$(quote caadm recordings export "$REC")" "$DIR/session.cast"
  show head -n1 "$DIR/session.cast"
  if [ -t 0 ] && [ -t 1 ]; then
    show caadm recordings play "$REC"
  else
    # asciinema needs a terminal: script(1) gives it one.
    printf '$ %s   (under script(1): no terminal here)\n' "$(quote caadm recordings play "$REC")"
    script -qec "$(quote "${CAADM[@]}" recordings play "$REC")" /dev/null | tee "$DIR/played.out"
    grep -q 'recorded on .*: 42' "$DIR/played.out" || die "the played recording lacks the session's output"
  fi
  echo

  step "The audit log: commands run, logins refused"
  for _ in $(seq 50); do caadm audit ls --type session.exec | grep -q 'sleep 4' && break; sleep 0.1; done
  show caadm audit ls --type session.exec
  show caadm audit ls --type proxy.auth
fi

step "The audit log: sign-ins"
show caadm audit ls --type user.login

ELAPSED=$((SECONDS - START))
if [ -z "${DEMO_SHELL:-}" ]; then
  step "Demo finished in ${ELAPSED}s: stopping everything and removing $DIR"
  [ -n "$ROOT" ] || note "As root (sudo make demo) it also runs the proxy and two nodes and logs in to them."
  [ -n "${DEMO_CHECK:-}" ] || note "make demo-shell (or DEMO_SHELL=1) leaves it all running to try by hand."
  exit 0
fi

step "Everything keeps running; try it by hand (Ctrl-C stops it all and removes $DIR)"
echo "  alice's password: $PASSWORD"
echo "  her current code: oathtool --totp -b $SECRET"
if [ -n "$ROOT" ]; then
  cat <<MSG
  ssh -F $CFG -J alice@$PROXY root@node-staging
  ssh -F $CFG root@node-prod                            # ProxyJump from the ssh_config
  ssh -F $CFG -p $PROXY_PORT root@node-prod@127.0.0.1   # one hop
  ssh -F $CFG -J alice@$PROXY www-data@node-prod        # refused by policy
  ssh -F $CFG 127.0.0.1 sessions                        # who is logged in where
  ${CAADM[*]} sessions ls
  ${CAADM[*]} recordings ls
  ${CAADM[*]} recordings play ID
  ${CAADM[*]} audit ls --since 10m
MSG
fi
cat <<MSG
  export TELEPORT_HOME=$TELEPORT_HOME SSH_AUTH_SOCK=$SSH_AUTH_SOCK
  $(quote "${LOGIN[@]}") --relogin     # sign in again (password, then a code)
  $BIN/teleport-keyhelper status
  ${CAADM[*]} users ls
  ${CAADM[*]} certs ls
  Web sign-in: https://127.0.0.1:$CA_PORT/ (accept the CA's certificate, pin $PIN)
MSG
while alive "$CA_PID"; do sleep 1; done
die "teleport-ca exited"
