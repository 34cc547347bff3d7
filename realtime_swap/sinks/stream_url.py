"""Stream URLs and the stream encoder choice: what ``--stream`` and ``--stream-encoder`` accept, checked without
opening anything (``realtime_swap.config`` validates with these; ``realtime_swap.sinks.network`` sends)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from realtime_swap.errors import SinkError

UDP_PACKET = 1316  # 7 TS packets: the usual MPEG-TS-over-UDP datagram, below any Ethernet MTU


class StreamProtocol(str, enum.Enum):
    """The URL schemes a stream can be sent to."""

    RTMP = "rtmp"
    RTMPS = "rtmps"
    RTSP = "rtsp"
    SRT = "srt"
    UDP = "udp"
    TCP = "tcp"


# the container each protocol carries
_CONTAINER = {
    StreamProtocol.RTMP: "flv",
    StreamProtocol.RTMPS: "flv",
    StreamProtocol.RTSP: "rtsp",
    StreamProtocol.SRT: "mpegts",
    StreamProtocol.UDP: "mpegts",
    StreamProtocol.TCP: "mpegts",
}


class StreamEncoder(str, enum.Enum):
    """H.264 encoder choice: AUTO takes NVENC when it opens here, libx264 otherwise."""

    AUTO = "auto"
    LIBX264 = "libx264"
    NVENC = "h264_nvenc"


def redact(url: str) -> str:
    """``url`` without credentials, query or stream key (safe for logs): rtmp://host/app/***."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path
    if parts.scheme in ("rtmp", "rtmps", "rtsp", "srt") and path.count("/") >= 2:
        path = path.rsplit("/", 1)[0] + "/***"
    return f"{parts.scheme}://{host}{path}"


@dataclass(frozen=True)
class StreamTarget:
    """A parsed stream URL: protocol, host, port and the options this sink understands.

    pkt_size (udp): datagram payload bytes, a multiple of 188; ttl (udp): multicast hops.
    """

    url: str
    protocol: StreamProtocol
    host: str
    port: int
    pkt_size: int = UDP_PACKET
    ttl: int = 1

    @property
    def container(self) -> str:
        return _CONTAINER[self.protocol]


def parse_stream_url(url: str) -> StreamTarget:
    """Validate ``url`` (rtmp://, rtmps://, rtsp://, srt://, udp://host:port, tcp://host:port); SinkError
    naming the problem otherwise."""
    parts = urlsplit(url)
    try:
        protocol = StreamProtocol(parts.scheme.lower())
    except ValueError:
        known = ", ".join(p.value for p in StreamProtocol)
        raise SinkError(f"stream {url}: unsupported scheme '{parts.scheme}' (use {known})") from None
    try:
        port = parts.port
    except ValueError as exc:
        raise SinkError(f"stream {redact(url)}: bad port ({exc})") from None
    if not parts.hostname:
        raise SinkError(f"stream {redact(url)}: no host")
    default_port = {StreamProtocol.RTMP: 1935, StreamProtocol.RTMPS: 443, StreamProtocol.RTSP: 554}.get(protocol)
    if port is None and default_port is None:
        raise SinkError(f"stream {redact(url)}: a port is required ({protocol.value}://host:port)")
    target = StreamTarget(url, protocol, parts.hostname, port or default_port or 0)
    if protocol in (StreamProtocol.UDP, StreamProtocol.TCP):
        options = dict(parse_qsl(parts.query))
        allowed = {"pkt_size", "ttl"} if protocol is StreamProtocol.UDP else set()
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise SinkError(f"stream {redact(url)}: unknown option(s) {', '.join(unknown)} (known: {sorted(allowed)})")
        try:
            pkt_size = int(options.get("pkt_size", UDP_PACKET))
            ttl = int(options.get("ttl", 1))
        except ValueError as exc:
            raise SinkError(f"stream {redact(url)}: {exc}") from None
        if pkt_size < 188 or pkt_size % 188 or pkt_size > 65424:
            raise SinkError(f"stream {redact(url)}: pkt_size must be a multiple of 188 in 188..65424, got {pkt_size}")
        target = StreamTarget(url, protocol, parts.hostname, target.port, pkt_size, ttl)
    return target
