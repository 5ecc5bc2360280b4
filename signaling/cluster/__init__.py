"""Several nodes through Redis (``diemcau serve --redis URL``): placement of rooms, exact
admission across nodes, dead-node detection. Without ``--redis`` nothing here is used."""
