"""Wire formats: RTP/RTCP parsing and building, codec payload descriptors, transport-cc,
SDP munging, datagram classification and the wraparound maths they all share.

Pure code only: no sockets, no asyncio, no aiortc objects. Modules here import only each other,
`sfu.types` and the extension URIs of `sfu.negotiation` (itself pure).
"""
