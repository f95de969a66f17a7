"""Operations on a whole archive that no single stage owns: checking it (``verify``), merging a
closed day's files (``compact``, the raw side here and the decoded side in ``decoder``), and
bringing in a node's own ``replica_cmds`` files (``node_import``). The recorder only writes what
the feed sends; everything that reads or rewrites what is already archived lives here."""
