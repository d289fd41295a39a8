"""The compliance gate: pure rules (rule packs, calling windows, caps, consent, caller ID)
and the stores they read (consent ledger, opt-out and opposition lists as keyed hashes).

Every dial, first attempt or retry, is decided by :func:`voicecast.compliance.gate.decide`
at the moment of dialling; rule sources are in ``../shared/COMPLIANCE-RULES.md`` and in each
rule's docstring.
"""
