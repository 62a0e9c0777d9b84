#!/usr/bin/env bash
# The gateway's main job on the bundled example, on 127.0.0.1:
#   Prosody (examples/prosody.cfg.lua, XMPP partition of example.com, user bob)
#   sipxmpp  (examples/gateway.toml: SIP on 5070, component sip.example.com)
#   SIPp UAS on 5060 standing in for the SIP partition's proxy / alice's phone
# then a SIP -> XMPP -> SIP round trip: alice (SIPp UAC) writes to sip:bob@example.com, bob's
# XMPP client answers alice@sip.example.com, and the answer arrives at alice's SIP phone.
#   ./scripts/demo.sh          run the round trip, then stop everything
#   ./scripts/demo.sh --keep   leave Prosody and the gateway running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
repo=$PWD
keep=0
[ "${1:-}" = "--keep" ] && keep=1

run=$(mktemp -d /tmp/sipxmpp-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_port() {  # wait_port PROTO PORT: until something listens on 127.0.0.1:PORT
  for _ in $(seq 1 100); do
    if [ "$1" = tcp ]; then
      (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0
    else
      ss -Hlun "sport = :$2" 2>/dev/null | grep -q . && return 0
    fi
    sleep 0.1
  done
  echo "demo: nothing listens on $1 port $2" >&2
  return 1
}

echo "== Prosody (XMPP partition) in $run"
cp examples/prosody.cfg.lua "$run/"
mkdir -p "$run/data" "$run/certs"
(cd "$run" && prosodyctl --config "$run/prosody.cfg.lua" register bob example.com bob >/dev/null)
(cd "$run" && exec prosody -F --config "$run/prosody.cfg.lua" >"$run/prosody.out" 2>&1) &
pids+=($!)
wait_port tcp 5347
wait_port tcp 5222

echo "== SIPp UAS on 127.0.0.1:5060 (the SIP partition: alice's phone)"
(cd "$run" && exec sipp -sf "$repo/examples/sipp/message_uas.xml" -i 127.0.0.1 -p 5060 -m 1 \
   -nostdin -trace_msg -message_file "$run/alice-phone.log" >"$run/alice-phone.out" 2>&1) &
phone=$!
pids+=($phone)
wait_port udp 5060

echo "== sipxmpp (examples/gateway.toml)"
.venv/bin/sipxmpp run --config examples/gateway.toml 2>"$run/gateway.log" &
pids+=($!)
wait_port tcp 5070

echo "== bob logs in to Prosody"
.venv/bin/python examples/xmpp_echo.py --jid bob@example.com --password bob \
  --ready-file "$run/bob.ready" &
bob=$!
for _ in $(seq 1 100); do [ -f "$run/bob.ready" ] && break; sleep 0.1; done

echo "== alice (SIPp UAC) sends a MESSAGE to sip:bob@example.com via sipxmpp"
sipp -sf examples/sipp/message_uac.xml -i 127.0.0.1 -p 5061 -m 1 -s bob -nostdin \
  -key from alice -key domain example.com -key text "Hello from SIP, bob" \
  127.0.0.1:5070 -trace_msg -message_file "$run/alice-uac.log" >/dev/null 2>&1
grep -m1 -E "^SIP/2.0 20[02]" "$run/alice-uac.log" | sed 's/^/[sip] alice got: /'

wait $bob
# The phone (SIPp, -m 1) exits once it has answered one MESSAGE.
for _ in $(seq 1 100); do kill -0 $phone 2>/dev/null || break; sleep 0.1; done
echo "== alice's phone received:"
awk '/^MESSAGE /{m=1} m{print "[sip]   " $0} m && /^\r?$/{n++} n==2{exit}' "$run/alice-phone.log" | tr -d '\r'
echo "== round trip SIP -> XMPP -> SIP complete; logs in $run"
if [ $keep -eq 1 ]; then
  echo "Prosody on 127.0.0.1:5222/5347, sipxmpp on 127.0.0.1:5070 (UDP/TCP). Ctrl-C to stop."
  wait
fi
