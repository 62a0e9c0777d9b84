"""Self-tests of the test-peer helpers in tests/support/ (SIPp, the lossy UDP relay, Kamailio)."""
