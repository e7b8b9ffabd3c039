"""Generated from protos/extproc/v1 by `python -m extproc.protos`; do not edit."""
