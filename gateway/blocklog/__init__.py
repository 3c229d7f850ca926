"""The block log: writing it (writer, handler), reading it (reader, scan, stats, index, cache), retention and `rsafe logs` (cli)."""
