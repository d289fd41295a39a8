"""asyncio stream helpers shared by the AMI client and the FastAGI server."""

from __future__ import annotations

import asyncio

CLOSE_TIMEOUT = 2.0
"""Seconds a socket may take to close before it is aborted."""


async def close_writer(writer: asyncio.StreamWriter, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``writer``; abort the socket when the peer does not let it close within
    ``timeout`` seconds (unsent data waiting on a peer that reads nothing). Never raises
    for a connection that is already broken."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except TimeoutError:
        writer.transport.abort()
    except (OSError, ConnectionError):
        pass
