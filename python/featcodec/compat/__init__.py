"""Adapters to other libraries; the only part of featcodec that imports them.

- :mod:`featcodec.compat.compressai`: CompressAI models coded by featcodec
  (``accelerate``) and converters between CompressAI's entropy modules and
  featcodec's.  Needs the ``compat`` extra (``pip install featcodec[compat]``).

Nothing here is imported by ``import featcodec`` or ``featcodec.entropy``.
"""
