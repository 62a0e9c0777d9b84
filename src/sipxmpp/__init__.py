"""sipxmpp: a SIP/SIMPLE-to-XMPP federation gateway with capability provisioning."""

__version__ = "0.1.0"
