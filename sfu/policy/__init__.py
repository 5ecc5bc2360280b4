"""Pure decision cores: layer allocation, the send-side bandwidth estimator, the audio-only rule
and the downlink/uplink policies built on them.

No sockets, no `await`, time passed in. They may read `sfu.wire` formats and `sfu.types`; the
shells at the top of `sfu/` call them.
"""
