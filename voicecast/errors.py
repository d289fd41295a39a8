"""Exceptions shared across voicecast's packages."""


class VoicecastError(Exception):
    """Base of every error voicecast reports to a user (the CLI prints the message)."""


class ConfigError(VoicecastError):
    """The configuration file or an environment override is invalid."""


class UnsafeValueError(VoicecastError, ValueError):
    """A value would be unsafe to send to AMI or AGI (CR/LF, dialplan metacharacters)."""


class NotFoundError(VoicecastError):
    """A named object (list, campaign, audio message) does not exist."""
