"""Sockets and addresses; knows frames but not what they mean."""

from tether.transport._channel import Channel, ChannelClosed
from tether.transport._url import Address, bound_address, connect, listen, parse_address, tune

__all__ = [
    "Address",
    "Channel",
    "ChannelClosed",
    "bound_address",
    "connect",
    "listen",
    "parse_address",
    "tune",
]
