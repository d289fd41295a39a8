"""The PBX behind a small interface (originate, channel events, call-flow hooks, channels).

The dialer only knows :mod:`voicecast.pbx.base`; :mod:`voicecast.pbx.asterisk` implements it
over AMI + FastAGI. A FreeSWITCH backend over its event socket would implement the same.
"""
