"""The dialer: pacing, the attempt state machine, outcomes and retries, the call flow."""
