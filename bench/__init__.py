"""Tether's benchmark suite (issue 3): local vs Tether vs RPyC, on loopback and an emulated link.

Run it from the repository root with ``python -m bench.run`` (``--quick`` for the CI-sized
version). Modules:

- ``cases``     the workloads, written once against a ``torch``/``numpy`` module object
- ``floors``    raw-socket floors: ping-pong, pipelined frame echo, bandwidth
- ``peers``     starting and stopping the servers (floor echo, RPyC classic, ``tether serve``)
- ``rpyc_peer`` the RPyC classic-mode server and the client-side glue
- ``netem``     the emulated datacenter link: namespaces, veth, tbf, delay relay
- ``runner``    the client side of one link: runs every case against every peer, prints JSON
- ``report``    targets, the table, the markdown and the plot
- ``run``       the one command
"""
