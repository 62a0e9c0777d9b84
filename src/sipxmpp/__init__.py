"""sipxmpp: a SIP/SIMPLE-to-XMPP federation gateway with capability provisioning."""

from . import native as _native

__version__ = "0.1.0"

# Compiled builds of the hot modules, when one matching the source exists (see native.py).
_native.activate()
