-- Prosody for the sipxmpp example: the XMPP partition of the domain example.com, on loopback.
-- Paths are relative to the directory Prosody is started in (scripts/demo.sh copies this file
-- into a fresh run directory and starts `prosody -F --config prosody.cfg.lua` there).
run_as_root = true            -- the demo may run as root (a container); Prosody refuses otherwise
daemonize = false
interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
http_ports = { }             -- no HTTP, no direct TLS: this example is plain loopback
https_ports = { }
c2s_direct_tls_ports = { }
data_path = "data"
certificates = "certs"
pidfile = "prosody.pid"
log = { info = "prosody.log" }
-- What a chat server needs: accounts (SASL), rosters, presence, messages, disco, ping.
modules_enabled = { "roster", "saslauth", "disco", "ping", "presence", "message", "offline" }
modules_disabled = { "s2s" }  -- this example has no other XMPP domain to federate with
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

-- The XMPP partition: users such as bob@example.com.
VirtualHost "example.com"

-- sipxmpp attaches here (XEP-0114). SIP users appear as user@sip.example.com.
Component "sip.example.com"
  component_secret = "change-me-example-secret"
