"""voicecast: self-hosted voice broadcasting through your own Asterisk PBX."""

__version__ = "0.1.0"
