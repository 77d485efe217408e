"""Generated gRPC code of the `pypoints.v1` API (proto/pypoints/v1/). Do not edit the
`*_pb2*` files: run `python scripts/gen_proto.py` and commit the result."""
