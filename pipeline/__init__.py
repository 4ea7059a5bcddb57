"""The data path: Kafka -> decode -> embed -> index, plus the metadata store and training."""

import os

if not os.environ.get("TWINSTREAM_RAY_ADDRESS"):
    # A local Ray listens on every interface unless this is set before `ray` is first
    # imported (it is read into a module constant then); with it, and the node address
    # 127.0.0.1, its daemons and workers bind loopback only. Joining a cluster needs
    # the real interfaces, so it is left alone when TWINSTREAM_RAY_ADDRESS is set.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
