"""Generated wire code; regenerate with scripts/gen_proto.py."""
