"""FastAGI: the server Asterisk connects to for each answered call (protocol only)."""

from voicecast.agi.server import AgiError, AgiHangup, AgiResult, AgiSession, FastAgiServer

__all__ = ["AgiError", "AgiHangup", "AgiResult", "AgiSession", "FastAgiServer"]
