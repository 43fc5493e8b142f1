"""From sources to points: corpora, BEIR splits, intake, chunking, indexing, query files."""
